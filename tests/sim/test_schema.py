"""The scenario reference: every key described, docs' key tables current, CLI prints it."""

import json

import pytest
from typer.testing import CliRunner

from sim import schema
from sim.cli.main import app
from sim.scenario import Scenario
from tests.paths import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_every_scenario_key_has_a_description():
    rows = schema.rows()
    assert len(rows) > 100                                  # the walk reaches nested blocks
    assert [r["key"] for r in rows if not r["description"]] == []


def test_rows_follow_the_model():
    keys = {r["key"] for r in schema.rows()}
    assert {"cluster.network.nic_gbps", "workload.parallel.tp", "workload.requests.prompt_len.median",
            "run.stragglers.detect_s", "cluster.storage.checkpoint.kind"} <= keys
    tp = next(r for r in schema.rows() if r["key"] == "workload.parallel.tp")
    assert (tp["type"], tp["default"]) == ("int", "1")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_generated_key_tables_in_docs_are_current(doc):
    text = doc.read_text()
    assert schema.update_docs(text) == text, f"run: python -m sim.schema {doc.relative_to(ROOT)}"


def test_docs_hold_every_section():
    text = (ROOT / "docs" / "scenario.md").read_text()
    found = [m.group("section") for m in schema.BLOCK.finditer(text)]
    assert found == schema.sections()


def test_update_docs_rewrites_a_stale_table():
    stale = "x\n<!-- schema: sim -->\n| old |\n<!-- /schema -->\ny\n"
    assert schema.update_docs(stale) == "x\n<!-- schema: sim -->\n" + schema.table("sim") + \
        "<!-- /schema -->\ny\n"


def test_cli_prints_markdown_and_json_schema():
    runner = CliRunner()
    md = runner.invoke(app, ["schema"])
    assert md.exit_code == 0 and md.output == schema.markdown()
    js = runner.invoke(app, ["schema", "--format", "json"])
    assert js.exit_code == 0
    assert json.loads(js.output) == Scenario.model_json_schema()
    bad = runner.invoke(app, ["schema", "--format", "xml"])
    assert bad.exit_code == 2
