"""The `adaptive-fusion` command line: work outside ROS (data, training, evaluation, profiling)."""
