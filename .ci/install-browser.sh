#!/usr/bin/env bash
# Installs what the explorer's end-to-end browser test needs: Debian's chromium and
# Playwright's Python package (driving the system chromium; no `playwright install`).
# Idempotent and quick when both are present. Usage: .ci/install-browser.sh [PYTHON]
set -euo pipefail
PY="${1:-.venv/bin/python}"
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
        $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
if ! "$PY" -c "import playwright" >/dev/null 2>&1; then
    "$PY" -m pip install -q playwright
fi
echo "browser test deps: $(command -v chromium) / playwright $("$PY" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
