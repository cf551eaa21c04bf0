#!/usr/bin/env bash
# Source this (`source scripts/ros_env.sh`) in every shell that runs adaptive_fusion's nodes, the
# demo, or your own sensor drivers talking to them. It points Fast DDS at the shipped profile
# (config/fastdds_profile.xml: a 16 MiB shared-memory segment), without which camera images of
# 640x480 and up and lidar sweeps are lost between processes with no error anywhere. A profile
# you already set in FASTDDS_DEFAULT_PROFILES_FILE is kept. Other RMWs: see the README.
_af_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_af_profile="$_af_here/config/fastdds_profile.xml"
if [ ! -f "$_af_profile" ]; then  # sourced from an install space: share/adaptive_fusion/config
  for _af_prefix in ${AMENT_PREFIX_PATH//:/ }; do
    if [ -f "$_af_prefix/share/adaptive_fusion/config/fastdds_profile.xml" ]; then
      _af_profile="$_af_prefix/share/adaptive_fusion/config/fastdds_profile.xml"
      break
    fi
  done
fi
if [ -n "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]; then
  echo "ros_env: keeping your FASTDDS_DEFAULT_PROFILES_FILE=$FASTDDS_DEFAULT_PROFILES_FILE"
elif [ -f "$_af_profile" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="$_af_profile"
  echo "ros_env: FASTDDS_DEFAULT_PROFILES_FILE=$FASTDDS_DEFAULT_PROFILES_FILE"
else
  echo "ros_env: fastdds_profile.xml not found (looked in $_af_here/config and AMENT_PREFIX_PATH)" >&2
fi
case "${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}" in
  rmw_fastrtps_cpp | rmw_fastrtps_dynamic_cpp) ;;
  *) echo "ros_env: RMW_IMPLEMENTATION=$RMW_IMPLEMENTATION ignores this profile; see the README" \
       "(large messages) for its own settings" ;;
esac
unset _af_here _af_profile _af_prefix
