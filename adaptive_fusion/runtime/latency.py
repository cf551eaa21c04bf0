"""Latency statistics over the last frames: the pipeline's own time, what the host (a node) adds
around it, and the age of the output against the newest input stamp."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

WINDOW = 200  # frames kept for the percentiles


class LatencyStats:
    def __init__(self, window: int = WINDOW):
        self._lock = threading.Lock()  # the worker adds, the diagnostics timer reads
        self._pipeline = deque(maxlen=window)
        self._host = deque(maxlen=window)
        self._age = deque(maxlen=window)

    def add(self, pipeline_ms: float, host_ms: float, age_ms: float) -> None:
        with self._lock:
            self._pipeline.append(pipeline_ms)
            self._host.append(host_ms)
            self._age.append(age_ms)

    def summary(self) -> dict[str, float]:
        """Last, mean and p95 of the pipeline time, means of the host's part and of the age;
        NaN before the first frame."""
        with self._lock:
            pipeline = np.array(self._pipeline or [np.nan])
            host = np.array(self._host or [np.nan])
            age = np.array(self._age or [np.nan])
        return {
            "latency_ms_last": float(pipeline[-1]),
            "latency_ms_mean": float(np.mean(pipeline)),
            "latency_ms_p95": float(np.percentile(pipeline, 95)),
            "node_overhead_ms_mean": float(np.mean(host)),
            "stamp_to_output_ms_mean": float(np.mean(age)),
        }
