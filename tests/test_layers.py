"""The import contract of docs/architecture.md, read from the source with ``ast``.

Layers, lowest first: hw_models <- workloads <- sim <- (calibration, app, sim.cli). Every
import statement counts, also those inside functions (lazy imports are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hw_models", "workloads", "sim", "calibration", "app")

# (importing module prefix, imported module prefix, exemptions of the importer, why)
FORBIDDEN = (
    ("hw_models", ("workloads", "sim", "calibration", "app"), (), "hardware knows no workload"),
    ("workloads", ("sim", "calibration", "app"), (), "what runs does not know time"),
    ("sim", ("calibration", "app"), ("sim.cli",),
     "the simulator reads fitted numbers through hw_models.profile only"),
    ("sim", ("sim.cli",), ("sim.cli",), "the library does not call its CLI"),
    ("calibration", ("app", "sim.cli"), (), "calibration uses the public API"),
    ("app", ("sim.cli",), (), "the explorer uses the public API, as notebooks do"),
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            me = module_name(path, root)
            for line, mod in imports(path, root):
                for src, targets, exempt, why in FORBIDDEN:
                    if not within(me, src) or any(within(me, e) for e in exempt):
                        continue
                    hit = next((t for t in targets if within(mod, t)), None)
                    if hit:
                        found.append(f"{path.relative_to(root)}:{line}: {me} imports {mod} ({why})")
    return sorted(set(found))


def test_layers_point_one_way():
    assert violations() == []


@pytest.mark.parametrize("importer, source, bad", [
    ("workloads/x.py", "from sim.engine import Row\n", True),
    ("workloads/x.py", "def f():\n    import sim.costs\n", True),
    ("sim/x.py", "from calibration import fit_p2p\n", True),
    ("sim/cli/x.py", "from calibration import fit_p2p\n", False),
    ("app/x.py", "from sim import cli\n", True),
    ("app/x.py", "from sim.simulate import simulate\n", False),
    ("hw_models/x.py", "from . import catalog\n", False),
    ("workloads/inference/x.py", "from ...sim import engine\n", True),
])
def test_the_checker_catches_what_it_should(tmp_path, importer, source, bad):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    f = tmp_path / importer
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(source)
    assert bool(violations(tmp_path)) == bad
