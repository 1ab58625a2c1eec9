"""Reproducible benchmarks of eventq against the Celery no-op ceiling and a naive task, in one run.

`python -m bench` (or `make bench`) writes bench/results/results.json, ratelimit.png and
summary.md; `--quick` is a short smoke run.
"""

__all__: list[str] = []
