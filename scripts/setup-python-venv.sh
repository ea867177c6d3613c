#!/usr/bin/env bash
# Creates .venv at the repository root with the Python packages the conformance
# tests need (exchangelib, the reference EWS client the simulator is checked against).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

"$python" -m venv "$root/.venv"
"$root/.venv/bin/python" -m pip install --quiet --upgrade pip
"$root/.venv/bin/python" -m pip install --quiet exchangelib==5.6.0
echo "Python venv ready: $root/.venv/bin/python"
