#!/usr/bin/env bash
# Builds the vision_msgs interfaces in scripts/third_party_interfaces/vision_msgs with the rosidl toolchain
# from PyPI and installs them into the venv prefix, next to the ROS wheels' own messages: the
# libraries land in <venv>/lib and the Python package in site-packages, which the venv python
# already finds (ros_wheels_bootstrapper puts <venv>/lib on LD_LIBRARY_PATH), so no extra
# environment is needed afterwards.
#
# Skipped when vision_msgs is already importable (a ROS 2 distribution, or an earlier build of the
# same sources). Quiet on success; on failure it prints the end of the build log and keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${VENV:-.venv}" && pwd)
PY="$VENV/bin/python"
SRC="$PWD/scripts/third_party_interfaces/vision_msgs"
STAMP="$VENV/share/vision_msgs/built_from.sha256"

source_hash() {
  (cd "$SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

importable() {
  "$PY" - <<'EOF' >/dev/null 2>&1
from rclpy.type_support import check_for_type_support
from vision_msgs.msg import Detection3DArray
check_for_type_support(Detection3DArray)  # loads the C type support, not only the Python module
EOF
}

if importable; then
  # Ours and up to date, or provided by someone else (no stamp): nothing to do.
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" = "$(source_hash)" ]; then
    exit 0
  fi
fi

# The wheels' exported CMake targets name the include directories of the machine that built
# them; point them at this interpreter's and numpy's, inside this venv only.
read -r PY_INCLUDE NUMPY_INCLUDE < <("$PY" -c \
  'import sysconfig, numpy; print(sysconfig.get_paths()["include"], numpy.get_include())')
{ grep -rlE --include='*.cmake' '/opt/python/cp3' "$VENV/share" || true; } | xargs -r sed -i -E \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NUMPY_INCLUDE#g" \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PY_INCLUDE#g"

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")
LOG="$BUILD/build.log"
GENERATOR=()
if command -v ninja >/dev/null; then GENERATOR=(-G Ninja); fi

echo "vision_msgs: building the interfaces into $VENV (log: $LOG)"
start=$SECONDS
if ! {
  AMENT_PREFIX_PATH="$VENV" cmake -S "$SRC" -B "$BUILD" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$PY" &&
  AMENT_PREFIX_PATH="$VENV" cmake --build "$BUILD" --parallel "$(nproc)" &&
  cmake --install "$BUILD"
} >"$LOG" 2>&1; then
  echo "vision_msgs: build FAILED; last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi

if ! importable; then
  echo "vision_msgs: built and installed, but 'import vision_msgs.msg' with its type support" \
    "fails in $PY (log: $LOG)" >&2
  exit 1
fi
source_hash >"$STAMP"
rm -rf "$BUILD"
echo "vision_msgs: built in $((SECONDS - start)) s"
