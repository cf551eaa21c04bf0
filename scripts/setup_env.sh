#!/usr/bin/env bash
# Creates the project-local virtual environment once (.venv) with every pinned dependency,
# then builds the ROS interface packages that no PyPI wheel provides. Re-running is cheap:
# make only calls this when requirements.txt or constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r requirements.txt -c constraints.txt
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
