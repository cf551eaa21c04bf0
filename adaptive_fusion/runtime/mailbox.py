"""The newest job, waiting for one worker thread.

A producer (the executor thread forming synchronized sets) never waits for inference and a
worker never works through a backlog: a job still waiting when a newer one arrives is replaced
and counted in `dropped`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")


class Mailbox(Generic[Job]):
    def __init__(self, handle: Callable[[Job], None], name: str = "worker"):
        self._handle = handle
        self._name = name
        self._wake = threading.Condition()
        self._job: Job | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        with self._wake:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def put(self, job: Job) -> None:
        with self._wake:
            if self._job is not None:
                self.dropped += 1
            self._job = job
            self._wake.notify()

    def clear(self) -> None:
        """Forget the job waiting, if any (not counted as dropped)."""
        with self._wake:
            self._job = None

    def stop(self) -> None:
        """Let the job in hand finish, then end the worker; a job still waiting is forgotten."""
        with self._wake:
            self._stopping = True
            self._job = None
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._job is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job, self._job = self._job, None
            self._handle(job)
