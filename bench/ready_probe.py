"""Imported into benchmark workers (`celery worker -I bench.ready_probe`): says when they are ready.

On `worker_ready` it creates `$BENCH_READY_DIR/<pid>`, so the harness knows the worker consumes
without parsing logs and without changing the worker's log level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import signals

__all__: list[str] = []


@signals.worker_ready.connect
def _mark_ready(**_: Any) -> None:
    folder = os.environ.get("BENCH_READY_DIR")
    if folder:
        (Path(folder) / str(os.getpid())).touch()
