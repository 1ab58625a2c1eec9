"""A daemon thread that runs one step every interval until stopped (the mover, the sweep)."""

from __future__ import annotations

import logging
import threading

import redis

__all__ = ["Periodic"]


class Periodic:
    """Calls `step()` every `interval_s` in a daemon thread; Redis outages are logged, not fatal."""

    name = "eventq-periodic"

    def __init__(self, interval_s: float, log: logging.Logger) -> None:
        self._interval_s = interval_s
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """Do one round of work (subclasses override)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait briefly for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.step()
            except redis.RedisError as error:
                self._log.warning("%s: Redis unavailable (%s)", self.name, type(error).__name__)
            except Exception:
                self._log.exception("%s failed", self.name)
