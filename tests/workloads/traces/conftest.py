"""Imports shared by the trace tests (each costs seconds; load once per session)."""


import pytest

from tests.paths import TRACES

DATA = TRACES


@pytest.fixture(scope="session")
def gloo_et_alone():
    """The 2-rank gloo run's Execution Traces alone (costed by the models)."""
    from workloads.traces.formats import load_et
    return load_et(sorted((DATA / "cpu_gpt_2rank_gloo_et").glob("rank?_et.json.gz")))
