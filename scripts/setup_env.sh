#!/usr/bin/env bash
# Creates the project-local virtual environment (.venv) with every pinned dependency, installs
# this package into it (editable), then builds the ROS interfaces that no PyPI wheel provides
# (vision_msgs). Safe to re-run: pip installs only what changed and the build is skipped when
# vision_msgs is already importable. `make` calls this when a pin or a set-up file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# pip warns once per lookup that this machine's extra local package indexes lack a package
# ("Location '...' is ignored: ..."); drop that noise, keep every other line, errors included.
pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 |
    { grep -v -E "^WARNING: Location '.*' is ignored" || true; }
}

start=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
echo "setup: installing the pinned packages (requirements.txt, constraints.txt)"
pip_install -r requirements.txt -c constraints.txt
# nuscenes-devkit 1.2.0 declares numpy<2 and Shapely~=2.0.3, which torch's numpy 2 rules out, and
# packages for parts of it the package never imports (maps, COCO export, its CLI, its tests).
# Installed without them: what nuscenes.nuscenes and nuscenes.eval.detection import is pinned in
# requirements.txt, and test/test_nuscenes.py runs both on this numpy.
pip_install --no-deps nuscenes-devkit==1.2.0
pip_install --no-deps --no-build-isolation -e .
VENV="$VENV" scripts/build_vision_msgs.sh
echo "setup: $VENV ready in $((SECONDS - start)) s"
