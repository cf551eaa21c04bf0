#!/usr/bin/env bash
# Runs the test suite (test/, see setup.cfg) in the project venv. Arguments go to pytest, e.g.
# `-k sync` or a test file to run only that. Each run gets its own ROS_DOMAIN_ID and
# localhost-only discovery (test/conftest.py), so it never hears another run's DDS traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m pytest -q "$@"
