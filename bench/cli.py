"""The benchmark's command line: run every measurement in order and write the results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celery
import kombu
import redis
from rich.console import Console

from bench import backfill, contenders, report, scenarios
from bench.harness import ROOT

__all__ = ["Plan", "main"]

RUNS = (
    "noop",
    "eventq",
    "naive_threads",
    "naive_prefork",
    "eventq_with_events",
    "rate_limit",
    "backfill",
    "shared_budget",
    "rss",
    "contenders",
)
# A database of its own on the same Redis server: Celery broadcasts (a Flower somewhere on
# the server sending `enable_events`, say) are scoped by database and must not reach our workers.
DEFAULT_REDIS_URL = "redis://localhost:6379/13"


@dataclass(frozen=True)
class Plan:
    """How much work each run gets."""

    noop_events: int
    naive_prefork_events: int
    naive_threads_events: int
    eventq_events: int
    eventq_processes: int
    rate_limit_s: float
    rate_limit_prequeued: int
    parked_jobs: int
    rss_settle_s: float
    repeats: int  # throughput runs, interleaved; the median run is reported
    queue_memory_jobs: int = 20_000  # backlog queued by enqueue_many for Redis memory per job
    backfill_events: int = 20_000  # backlog of the backfill run (eventq bulk drains it all)
    backfill_window_s: float = 60.0  # the single-event contenders' measured window


FULL = Plan(10_000, 1_000, 5_000, 5_000, 2, 60.0, 1_500, 100_000, 5.0, 3)
QUICK = Plan(2_000, 150, 1_000, 1_000, 2, 15.0, 400, 10_000, 2.0, 1, 5_000, 4_000, 20.0)
# Throughput runs share the CPUs with whatever else runs; repeating them in turn and keeping
# each one's median run makes the ratios less sensitive to a neighbour's burst.
_REPEATED = ("noop", "eventq", "naive_threads", "eventq_with_events")


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "redis_url": args.redis_url,
        "git_commit": commit,
        "fake_latency_ms": scenarios.LATENCY_MS,
    }


def _measure(name: str, plan: Plan, url: str) -> dict[str, Any]:
    if name == "noop":
        return scenarios.noop_ceiling(plan.noop_events, url).as_json()
    if name == "eventq":
        return scenarios.eventq_throughput(plan.eventq_events, url, plan.eventq_processes).as_json()
    if name == "eventq_with_events":
        run = scenarios.eventq_throughput(
            plan.eventq_events, url, plan.eventq_processes, task_events=True
        )
        return run.as_json()
    if name == "naive_threads":
        threads = ["-P", "threads", "-c", "32"]
        return scenarios.naive_throughput(plan.naive_threads_events, url, threads).as_json()
    if name == "naive_prefork":
        return scenarios.naive_throughput(plan.naive_prefork_events, url, []).as_json()
    if name == "rate_limit":
        eventq = scenarios.eventq_rate_limit(plan.rate_limit_s, plan.rate_limit_prequeued, url)
        naive = scenarios.naive_rate_limit(plan.rate_limit_s, plan.rate_limit_prequeued, url)
        return {"eventq": eventq.as_json(), "naive": naive.as_json()}
    if name == "shared_budget":
        on = scenarios.shared_budget(
            plan.rate_limit_s, plan.rate_limit_prequeued, url, sharing=True
        )
        off = scenarios.shared_budget(
            plan.rate_limit_s, plan.rate_limit_prequeued, url, sharing=False
        )
        return {"sharing": on.as_json(), "baseline": off.as_json()}
    if name == "backfill":
        return backfill.backfill(plan.backfill_events, plan.backfill_window_s, url)
    if name == "contenders":
        return contenders.contenders(
            plan.eventq_events, plan.noop_events, plan.queue_memory_jobs, url
        )
    if name == "rss":
        return scenarios.schedule_rss(plan.parked_jobs, url, plan.rss_settle_s).as_json()
    raise ValueError(name)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda run: float(run["events_per_s"]))
    median = dict(ordered[len(ordered) // 2])
    median["all_events_per_s"] = [run["events_per_s"] for run in runs]
    return median


_KEYS = {"rate_limit": "rate_limit", "rss": "retry_schedule_rss"}
_RESULT_KEYS = {*RUNS, *_KEYS.values()}


def _run_all(selected: list[str], plan: Plan, url: str, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {}
    repeated: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(plan.repeats):
        for name in (n for n in RUNS if n in selected and n in _REPEATED):
            started = time.monotonic()
            run = _measure(name, plan, url)
            repeated.setdefault(name, []).append(run)
            console.print(
                f"{name} (round {round_ + 1}/{plan.repeats}): {run['events_per_s']} events/s "
                f"in {time.monotonic() - started:.0f} s"
            )
    results.update({name: _median_run(runs) for name, runs in repeated.items()})
    for name in (n for n in RUNS if n in selected and n not in _REPEATED):
        started = time.monotonic()
        results[_KEYS.get(name, name)] = _measure(name, plan, url)
        console.print(f"{name}: done in {time.monotonic() - started:.0f} s")
    return results


def _merged(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """Return the figures already in `path` updated with a partial run's (`--only`); the new
    run's meta is kept beside the old under `meta_last_partial`."""
    try:
        old: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return new
    merged = {**old, **{k: v for k, v in new.items() if k not in ("meta", "plan", "ratios")}}
    merged["meta_last_partial"] = {**new["meta"], "runs": [k for k in new if k in _RESULT_KEYS]}
    merged["ratios"] = report.ratios(merged)
    return merged


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 (the targets are reported, not enforced)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short smoke run (small N, 15 s rate-limit run)"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("EVENTQ_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="results folder"
    )
    parser.add_argument(
        "--only", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    console = Console(width=130)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(selected) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {"meta": _meta(args), "plan": plan.__dict__}
    if results["meta"]["load_before"] > 1.0:
        console.print(
            f"[yellow]load average {results['meta']['load_before']} before the run: other "
            "processes share the CPUs, figures will be lower and noisier[/]"
        )
    results.update(_run_all(selected, plan, args.redis_url, console))
    results["meta"]["load_after"] = round(os.getloadavg()[0], 2)
    results["ratios"] = report.ratios(results)
    out = args.out / ("quick" if args.quick else "")
    if set(selected) != set(RUNS):
        results = _merged(out / "results.json", results)
    report.write_json(results, out / "results.json")
    if "rate_limit" in results:
        report.write_plot(results, out / "ratelimit.png")
    if "backfill" in results:
        report.write_backfill_plot(results["backfill"], out / "backfill.png")
    report.write_summary(results, out / "summary.md", results["meta"]["command"])
    report.print_table(results, console)
    console.print(f"results in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
