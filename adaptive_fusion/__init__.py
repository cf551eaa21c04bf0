"""Adaptive-depth camera + depth + lidar fusion: every frame, each modality gets only as many
transformer layers as its measured quality deserves and the compute budget allows."""

__version__ = "0.1.0"
