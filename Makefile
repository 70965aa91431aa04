# clustersim: two commands set everything up on a fresh machine: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast bench lint validate accuracy clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/clustersim simulate --default
	@echo
	@echo "Open the what-if explorer with: $(BIN)/clustersim app"
	@echo "(serves http://localhost:8501; --scenario FILE starts from your scenario, docs/app.md)"

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

bench: venv
	$(BIN)/python benchmarks/sim_speed.py

validate: venv
	$(BIN)/python -m calibration.build_profiles --check
	$(BIN)/clustersim validate megatron-sc21
	$(BIN)/clustersim validate korthikanti
	$(BIN)/clustersim validate trtllm
	$(BIN)/clustersim validate nccl
	$(BIN)/clustersim validate long-context
	$(BIN)/clustersim validate fp8
	$(BIN)/clustersim validate schedules
	$(BIN)/clustersim validate dense

	$(BIN)/clustersim validate rl

# Every validation suite; rewrites README's accuracy table and the stored residual band.
accuracy: venv
	$(BIN)/python -m calibration.dashboard --readme README.md --write-band

lint: venv
	$(BIN)/ruff check sim hw_models workloads calibration app tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py  # import contract

clean:
	rm -rf $(VENV) build *.egg-info
