"""Turn the benchmark's runs into results.json, ratelimit.png, summary.md and a printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["TARGETS", "print_table", "ratios", "write_json", "write_plot", "write_summary"]

TARGETS = {
    "eventq_vs_noop": 0.8,
    "eventq_vs_naive_prefork": 15.0,
    "eventq_vs_naive_threads": 1.5,
    "rate_limit_sustained": 0.95,
    "rate_limit_429_fraction": 0.01,
    "shared_budget_429_fraction": 0.02,
    "shared_budget_other_kept": 0.90,
    "shared_budget_of_what_is_left": 0.85,
    "peak_rss_mb": 200.0,
    "retry_schedule_rss_growth": 0.10,
    "one_worker_vs_noop_unpacked": 0.8,
    "one_worker_vs_dramatiq_packed": 1.0,
    "one_worker_peak_rss_mb_per_process": 200.0,
    "queue_memory_kb_per_job": 1.5,
    "backfill_events_per_s": 600.0,
    "backfill_vs_single_event": 60.0,
    "backfill_429s": 0,
    "backfill_duplicates": 0,
    "backfill_lost": 0,
    "backfill_records_wrong": 0,
}
_BACKFILL = ("eventq_bulk", "eventq_single", "naive")
_CONTENDERS = ("noop", "eventq_unpacked", "eventq_packed", "dramatiq")


def _rate(results: dict[str, Any], name: str) -> float | None:
    run = results.get(name)
    return float(run["events_per_s"]) if run else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 2) if top and bottom else None


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return every measured figure that has a target, with the target and whether it is met."""
    eventq = _rate(results, "eventq")
    measured: dict[str, float | None] = {
        "eventq_vs_noop": _ratio(eventq, _rate(results, "noop")),
        "eventq_vs_naive_prefork": _ratio(eventq, _rate(results, "naive_prefork")),
        "eventq_vs_naive_threads": _ratio(eventq, _rate(results, "naive_threads")),
    }
    limited = results.get("rate_limit", {}).get("eventq")
    if limited:
        measured["rate_limit_sustained"] = limited["sustained_fraction"]
        measured["rate_limit_429_fraction"] = limited["rate_limited_fraction"]
    shared = results.get("shared_budget", {}).get("sharing")
    if shared:
        measured["shared_budget_429_fraction"] = shared["eventq_429_fraction"]
        measured["shared_budget_other_kept"] = shared["other_kept_fraction"]
        measured["shared_budget_of_what_is_left"] = shared["eventq_share_of_left"]
    if results.get("eventq"):
        measured["peak_rss_mb"] = results["eventq"]["peak_rss_mb"]
    if results.get("retry_schedule_rss"):
        measured["retry_schedule_rss_growth"] = results["retry_schedule_rss"]["growth_fraction"]
    measured.update(_contender_ratios(results.get("contenders") or {}))
    measured.update(_backfill_figures(results.get("backfill") or {}))
    upper = {
        "backfill_429s",
        "backfill_duplicates",
        "backfill_lost",
        "backfill_records_wrong",
        "one_worker_peak_rss_mb_per_process",
        "queue_memory_kb_per_job",
        "rate_limit_429_fraction",
        "shared_budget_429_fraction",
        "peak_rss_mb",
        "retry_schedule_rss_growth",
    }
    out: dict[str, dict[str, Any]] = {}
    for name, value in measured.items():
        target = TARGETS[name]
        met = None if value is None else (value <= target if name in upper else value >= target)
        out[name] = {
            "value": value,
            "target": target,
            "at_most" if name in upper else "at_least": True,
            "met": met,
        }
    return out


def _steady(runs: dict[str, Any], name: str) -> float | None:
    run = runs.get(name)
    return float(run["steady_events_per_s"]) if run else None


def _contender_ratios(runs: dict[str, Any]) -> dict[str, float | None]:
    """Return the `contenders` run's figures that have a target (none when it did not run)."""
    if not runs:
        return {}
    rss = [runs[k]["peak_rss_mb_per_process"] for k in ("eventq_unpacked", "eventq_packed")]
    memory = runs.get("queue_memory")
    return {
        "one_worker_vs_noop_unpacked": _ratio(
            _steady(runs, "eventq_unpacked"), _steady(runs, "noop")
        ),
        "one_worker_vs_dramatiq_packed": _ratio(
            _steady(runs, "eventq_packed"), _steady(runs, "dramatiq")
        ),
        "one_worker_peak_rss_mb_per_process": max(rss),
        "queue_memory_kb_per_job": round(memory["key_bytes_per_job"] / 1000, 2) if memory else None,
    }


def _backfill_figures(runs: dict[str, Any]) -> dict[str, float | None]:
    """Return the backfill run's figures that have a target (none when it did not run)."""
    bulk, single = runs.get("eventq_bulk"), runs.get("eventq_single")
    if not bulk:
        return {}
    rate = float(bulk["steady_events_per_s"])
    return {
        "backfill_events_per_s": rate,
        "backfill_vs_single_event": _ratio(rate, single and single["steady_events_per_s"]),
        "backfill_429s": bulk["rate_limited"],
        "backfill_duplicates": bulk["duplicates"],
        "backfill_lost": bulk["lost"],
        "backfill_records_wrong": bulk["records_wrong"],
    }


_BACKFILL_COLUMNS = (
    "contender (100 requests / 10 s, 50 ms)",
    "measured over",
    "events created",
    "steady events/s",
    "requests",
    "events/request",
    "429s",
    "duplicates",
    "lost",
    "records wrong",
    "worker CPU ms/ev",
)


_BACKFILL_FIGURES = (
    "steady_events_per_s",
    "requests",
    "events_per_request",
    "rate_limited",
    "duplicates",
    "lost",
    "records_wrong",
    "worker_cpu_ms_per_event",
)


def _backfill_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the `backfill` run: one per contender, eventq bulk first."""
    runs = results.get("backfill") or {}
    rows = []
    for key in _BACKFILL:
        run = runs.get(key)
        if run:
            over = (
                f"whole backlog ({run['seconds']:g} s)"
                if run["window_s"] is None
                else f"first {run['window_s']:g} s"
            )
            created = f"{run['delivered']:,} of {run['backlog']:,}"
            rows.append([run["name"], over, created, *(_fmt(run[k]) for k in _BACKFILL_FIGURES)])
    return rows


def write_backfill_plot(runs: dict[str, Any], path: Path) -> None:
    """Plot events created over time by each backfill contender, to `path`."""
    import matplotlib  # noqa: PLC0415 - heavy, only for the plot; the backend is set before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(9, 4.5))
    for key, colour in zip(_BACKFILL, ("tab:blue", "tab:orange", "tab:red"), strict=True):
        run = runs.get(key)
        if not run:
            continue
        total, cumulative = 0, [0]
        for count in run["created_per_s"]:
            total += count
            cumulative.append(total)
        label = f"{run['name']}: {run['steady_events_per_s']:,.0f} events/s"
        if run["window_s"] is not None:
            label += f" (its first {run['window_s']:g} s of the same backlog)"
        axes.plot(range(len(cumulative)), cumulative, color=colour, label=label)
    axes.set_xlabel("seconds since the contender's first request")
    axes.set_ylabel("events created at the fake")
    axes.set_title("Backfill against a fake HubSpot enforcing 100 requests per 10 s, 50 ms latency")
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _contender_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the `contenders` run: steady rate, whole-run rate, CPU, RSS, ratios."""
    runs = results.get("contenders") or {}
    noop, dramatiq = _steady(runs, "noop"), _steady(runs, "dramatiq")
    rows = []
    for key in _CONTENDERS:
        run = runs.get(key)
        if run:
            steady = float(run["steady_events_per_s"])
            rows.append(
                [
                    run["name"],
                    _fmt(run["events"]),
                    _fmt(steady),
                    _fmt(run["whole_run_events_per_s"]),
                    _fmt(run["worker_cpu_ms_per_event"]),
                    _fmt(run["peak_rss_mb_per_process"]),
                    _fmt(_ratio(steady, noop)),
                    _fmt(_ratio(steady, dramatiq)),
                ]
            )
    return rows


_CONTENDER_COLUMNS = (
    "contender (50 ms, no limit)",
    "events",
    "steady events/s",
    "whole run events/s",
    "worker CPU ms/ev",
    "peak RSS MB/process",
    "x no-op",
    "x Dramatiq",
)


def _memory_line(results: dict[str, Any]) -> str | None:
    memory = (results.get("contenders") or {}).get("queue_memory")
    if not memory:
        return None
    return (
        f"Redis memory per job queued by enqueue_many ({memory['jobs']:,} jobs, "
        f"{memory['event_json_bytes']}-byte event): {memory['key_bytes_per_job']:,.0f} B by "
        "MEMORY USAGE of its keys (of which the Celery message "
        f"{memory['message_bytes_per_job']:,.0f} B), "
        f"{memory['used_memory_bytes_per_job']:,.0f} B by used_memory; a backlog of "
        f"1,000,000 needs {memory['backlog_of_1m_gb']} GB"
    )


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write every figure of the run (and the ratios against the targets) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Plot delivered requests per 10 s window against the limit, eventq and naive, to `path`."""
    import matplotlib  # noqa: PLC0415 - heavy, only for the plot; the backend is set before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = results.get("rate_limit", {})
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    limit = None
    for key, colour in (("eventq", "tab:blue"), ("naive", "tab:red")):
        run = runs.get(key)
        if not run:
            continue
        limit, window_s = run["limit"], run["window_s"]
        starts = [i * window_s for i in range(len(run["delivered_per_window"]))]
        offset = -1.2 if key == "eventq" else 1.2
        top.bar(
            [s + window_s / 2 + offset for s in starts],
            run["delivered_per_window"],
            width=2.4,
            color=colour,
            label=f"{run['name']}: delivered per {window_s:g} s",
        )
        bottom.bar(
            [s + window_s / 2 + offset for s in starts],
            run["rejected_per_window"],
            width=2.4,
            color=colour,
            label=f"{run['name']}: 429s per {window_s:g} s",
        )
    if limit is not None:
        top.axhline(limit, color="black", linestyle="--", label=f"HubSpot limit ({limit} per 10 s)")
    top.set_ylabel("delivered (HTTP 200)")
    top.set_title("Fake HubSpot enforcing 100 requests per 10 s rolling, 50 ms latency")
    top.legend(loc="lower right", fontsize=8)
    bottom.set_ylabel("rejected (HTTP 429)")
    bottom.set_xlabel("seconds since the first request")
    bottom.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}{suffix}" if value < 100 else f"{value:,.0f}{suffix}"
    return f"{value}{suffix}"


def _throughput_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in (
        ("noop", "Celery no-op task (prefork, default)"),
        ("naive_prefork", "naive requests task, prefork (default)"),
        ("naive_threads", "naive requests task, --pool threads -c 32"),
        ("eventq", "eventq"),
        ("eventq_with_events", "eventq, task events on (Flower attached)"),
    ):
        run = results.get(key)
        if not run:
            continue
        rows.append(
            [
                label,
                _fmt(run["events"]),
                _fmt(run["events_per_s"]),
                _fmt(run["worker_cpu_ms_per_event"]),
                _fmt(run["redis_cpu_ms_per_event"]),
                _fmt(run["fake_cpu_ms_per_event"]),
                _fmt(run["peak_rss_mb"]),
            ]
        )
    return rows


_SHARED_COLUMNS = (
    ("run",),
    ("eventq delivered per 10 s",),
    ("eventq 429s",),
    ("other client kept",),
    ("eventq of what is left",),
)


def _shared_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key in ("sharing", "baseline"):
        run = results.get("shared_budget", {}).get(key)
        if run:
            rows.append(
                [
                    f"{run['name']}, {run['duration_s']:g} s",
                    " ".join(str(n) for n in run["eventq_per_window"]),
                    f"{run['eventq_rate_limited']} of {run['eventq_requests']} "
                    f"({run['eventq_429_fraction']:.1%})",
                    f"{run['other_ok']} of {run['other_sent']} ({run['other_kept_fraction']:.1%})",
                    f"{run['eventq_share_of_left']:.1%}",
                ]
            )
    return rows


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the figures and the ratios against the targets."""
    console = console or Console()
    table = Table(title="Throughput at 50 ms fake latency (pre-queued, one run)")
    for column in (
        "run",
        "events",
        "events/s",
        "worker CPU ms/ev",
        "Redis CPU ms/ev",
        "fake CPU ms/ev",
        "peak RSS MB",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in _throughput_rows(results):
        table.add_row(*row)
    console.print(table)
    limited = Table(title="Rate-limit run: fake enforcing 100 per 10 s rolling")
    for column in (
        "run",
        "s",
        "delivered per 10 s window",
        "sustained",
        "requests",
        "429s",
        "429 share",
        "max in any 10 s",
        "gave up",
    ):
        limited.add_column(column, justify="left" if column == "run" else "right")
    for key in ("eventq", "naive"):
        run = results.get("rate_limit", {}).get(key)
        if run:
            limited.add_row(
                run["name"],
                _fmt(run["duration_s"]),
                " ".join(str(n) for n in run["delivered_per_window"]),
                f"{run['sustained_fraction']:.1%}",
                _fmt(run["requests"]),
                _fmt(run["rate_limited"]),
                f"{run['rate_limited_fraction']:.1%}",
                _fmt(run["max_in_any_window"]),
                _fmt(run.get("gave_up", 0)),
            )
    console.print(limited)
    backfill = Table(title="Backfill: one backlog on the bulk queue, fake enforcing 100 per 10 s")
    for column in _BACKFILL_COLUMNS:
        backfill.add_column(column, justify="left" if column == _BACKFILL_COLUMNS[0] else "right")
    for row in _backfill_rows(results):
        backfill.add_row(*row)
    console.print(backfill)
    shared = Table(title="Shared budget: another client spends 30 of 100 per 10 s")
    for column, *_ in _SHARED_COLUMNS:
        shared.add_column(column, justify="left" if column == "run" else "right")
    for row in _shared_rows(results):
        shared.add_row(*row)
    console.print(shared)
    contenders = Table(title="One eventq worker vs the Celery no-op ceiling and Dramatiq (steady)")
    for column in _CONTENDER_COLUMNS:
        left = column == _CONTENDER_COLUMNS[0]
        contenders.add_column(column, justify="left" if left else "right")
    for row in _contender_rows(results):
        contenders.add_row(*row)
    console.print(contenders)
    if _memory_line(results):
        console.print(_memory_line(results))
    rss = results.get("retry_schedule_rss")
    if rss:
        console.print(
            f"Worker RSS idle {rss['idle_rss_mb']} MB, with {rss['jobs']:,} jobs in the retry "
            f"schedule {rss['loaded_rss_mb']} MB ({rss['growth_fraction']:+.1%}); those jobs "
            f"take {rss['redis_memory_mb']} MB in Redis"
        )
    targets = Table(title="Targets")
    for column in ("figure", "measured", "target", "met"):
        targets.add_column(column)
    for name, row in results.get("ratios", {}).items():
        bound = "≤" if row.get("at_most") else "≥"
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[row["met"]]
        targets.add_row(name, _fmt(row["value"]), f"{bound} {row['target']}", met)
    console.print(targets)


def write_summary(results: dict[str, Any], path: Path, command: str) -> None:
    """Write a README-ready Markdown summary of the run to `path`."""
    meta = results.get("meta", {})
    lines = [
        "<!-- written by `python -m bench`; do not edit by hand -->",
        f"Measured with `{command}` on {meta.get('date', '?')} ({meta.get('cpus', '?')} CPUs, "
        f"load average {meta.get('load_before', '?')} before the run).",
    ]
    partial = results.get("meta_last_partial")
    if partial:
        lines.append(
            f"Runs {', '.join(partial.get('runs', []))}: `python -m bench --only` on "
            f"{partial.get('date', '?')} (load average {partial.get('load_before', '?')} before)."
        )
    lines += [
        "",
        "| run | events/s | worker CPU ms/event | Redis CPU ms/event | peak worker RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r[0]} | {r[2]} | {r[3]} | {r[4]} | {r[6]} |" for r in _throughput_rows(results)]
    lines += [
        "",
        "| rate-limit run (100 per 10 s) | delivered per window | sustained | 429s |",
        "| --- | --- | ---: | ---: |",
    ]
    for key in ("eventq", "naive"):
        run = results.get("rate_limit", {}).get(key)
        if run:
            windows = " ".join(str(n) for n in run["delivered_per_window"])
            lines.append(
                f"| {run['name']} | {windows} | {run['sustained_fraction']:.1%} | "
                f"{run['rate_limited']} of {run['requests']} ({run['rate_limited_fraction']:.1%}) |"
            )
    if _backfill_rows(results):
        lines += ["", "| " + " | ".join(_BACKFILL_COLUMNS) + " |"]
        lines.append("| --- | --- |" + " ---: |" * (len(_BACKFILL_COLUMNS) - 2))
        lines += ["| " + " | ".join(row) + " |" for row in _backfill_rows(results)]
    if _shared_rows(results):
        lines += ["", "| " + " | ".join(c for c, *_ in _SHARED_COLUMNS) + " |"]
        lines.append("| --- |" + " ---: |" * (len(_SHARED_COLUMNS) - 1))
        lines += ["| " + " | ".join(row) + " |" for row in _shared_rows(results)]
    if _contender_rows(results):
        lines += ["", "| " + " | ".join(_CONTENDER_COLUMNS) + " |"]
        lines.append("| --- |" + " ---: |" * (len(_CONTENDER_COLUMNS) - 1))
        lines += ["| " + " | ".join(row) + " |" for row in _contender_rows(results)]
    if _memory_line(results):
        lines += ["", f"{_memory_line(results)}."]
    rss = results.get("retry_schedule_rss")
    if rss:
        lines += [
            "",
            f"Worker RSS idle {rss['idle_rss_mb']} MB; with {rss['jobs']:,} jobs waiting in the "
            f"retry schedule {rss['loaded_rss_mb']} MB ({rss['growth_fraction']:+.1%}).",
        ]
    lines += ["", "| figure | measured | target | met |", "| --- | ---: | ---: | :---: |"]
    for name, row in results.get("ratios", {}).items():
        bound = "≤" if row.get("at_most") else "≥"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(f"| {name} | {_fmt(row['value'])} | {bound} {row['target']} | {met} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
