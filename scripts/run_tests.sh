#!/usr/bin/env bash
# Runs the test suite in the project venv, isolated from other DDS traffic on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$VENV/bin/python" -m pytest -q "$@" test
