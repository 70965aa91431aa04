"""Where the tests' data lives, from the repository root (so tests run from any checkout)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "tests" / "data" / "traces"
# Published traces beside the repository (../shared), present in CI and the shared workspace.
SHARED_TRACES = ROOT.parent / "shared" / "traces"
