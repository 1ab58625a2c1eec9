"""The job hash has one home: its field names are spelled in `eventq/jobs.py` and the Lua scripts.

Every Python file of the project (packages, bench, scripts; not the tests, which look at Redis
from the outside) is parsed with `ast`. A field name that only the job hash uses must not appear
as a string anywhere else; a field name other records share (`state`, `attempts`, …) must not be
a field argument of a Redis hash command on a job's key (`keys.job(…)`, `…:job:…`) anywhere else.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

from rich.console import Console

from eventq.jobs import JOB_FIELDS, BeginStatus
from eventq.records import AttemptRecord, JobState, JobStatus
from eventq_cli.tables import job_table

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "eventq" / "jobs.py"
SOURCES = ("eventq", "worker", "producers", "fake_hubspot", "eventq_cli", "bench", "scripts")
# names other records use too (the envelope, HubSpot's answers, JobStatus, the breaker's hash)
SHARED = frozenset(
    {"jobId", "state", "attempt", "attempts", "source", "summary", "objectId", "createdAt"}
    | {"updatedAt"}
)
JOB_ONLY = JOB_FIELDS - SHARED
LUA_VALUES = frozenset({"replay"})  # quoted values that are not field names (a job's source)
HASH_COMMANDS = frozenset({"hget", "hmget", "hset", "hsetnx", "hdel", "hincrby", "hexists"})


def python_files() -> Iterator[Path]:
    """Yield every Python file of the project outside the tests."""
    for top in SOURCES:
        yield from sorted((ROOT / top).rglob("*.py"))


def strings_in(node: ast.AST) -> Iterator[str]:
    """Yield every string constant under `node` (dict keys, mapping= arguments and lists too)."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield inner.value


def spelled(value: object) -> str | None:
    """Return a str or bytes constant as text (a reply's field read as `raw[b"lastError"]`)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def on_a_job_hash(node: ast.AST) -> bool:
    """True for a call of a Redis hash command whose key names a job (`keys.job(…)`, `:job:`)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in HASH_COMMANDS
    ):
        return False
    key = node.args[0] if node.args else next((k.value for k in node.keywords), None)
    return key is not None and "job" in ast.unparse(key).lower()


def misplaced_fields(source: str) -> list[str]:
    """Return `line: name` for each job-hash field a module spells outside the owner, sorted."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and spelled(node.value) in JOB_ONLY:
            found.add(f"{node.lineno}: {spelled(node.value)}")
        elif isinstance(node, ast.Call) and on_a_job_hash(node):
            found |= {f"{node.lineno}: {name}" for name in strings_in(node) if name in JOB_FIELDS}
    return sorted(found)


def lua_fields(text: str) -> set[str]:
    """Return the quoted lower-camel words of a Lua script: field names, states and statuses."""
    words = set(re.findall(r"'([a-z][A-Za-z_]*)'", text))
    return words - set(get_args(JobState)) - set(get_args(BeginStatus)) - LUA_VALUES


def test_no_python_module_but_the_job_record_spells_a_job_hash_field() -> None:
    # Given every Python file of the project except the job-record module
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in python_files()
        if path != OWNER and (found := misplaced_fields(path.read_text(encoding="utf-8")))
    }
    # Then none spells a field of the job hash
    assert offenders == {}


def test_the_check_catches_a_raw_hget_and_a_hash_written_from_a_mapping() -> None:
    # Given the two shapes of a raw access the job-record module replaced
    raw_read = 'state = client.hget(keys.job(job_id), "state")\n'
    raw_write = 'pipe.hset(f"{prefix}:job:{n}", mapping={"attempt": 2, "nextAttemptAt": due})\n'
    shared_elsewhere = 'body = {"state": "open"}\nclient.hget(breaker_key, "state")\n'
    # Then each is reported, and a shared name outside a job's hash is not
    assert misplaced_fields(raw_read) == ["1: state"]
    assert misplaced_fields(raw_write) == ["1: attempt", "1: nextAttemptAt"]
    assert misplaced_fields(shared_elsewhere) == []
    assert misplaced_fields('x = {"lastError": "boom"}\n') == ["1: lastError"]
    assert misplaced_fields('error = raw[b"lastError"]\n') == ["1: lastError"]


def test_the_lua_scripts_on_jobs_use_only_the_fields_the_module_names() -> None:
    # Given the scripts in eventq/lua (all of them act on job hashes or the schedule)
    scripts = sorted((ROOT / "eventq" / "lua").glob("*.lua"))
    assert {p.stem for p in scripts} >= {"create_job", "begin_attempt", "reopen_job", "claim_due"}
    # Then every field a script names is one of JobField's
    unknown = {p.name: lua_fields(p.read_text()) - JOB_FIELDS for p in scripts}
    assert {name: words for name, words in unknown.items() if words} == {}
    assert lua_fields("redis.call('HSET', KEYS[1], 'state', 'queued', 'lastErr', '1')") == {
        "state",
        "lastErr",
    }


def rendered(job: JobStatus) -> str:
    """Return `eventq status`'s table of `job` as plain text, wide enough not to wrap."""
    console = Console(width=200, record=True, color_system=None)
    console.print(job_table(job))
    return console.export_text()


def test_the_status_of_a_replayed_job_says_how_its_attempts_are_counted() -> None:
    # Given a job dead-lettered on attempt 1, replayed, and delivered on attempt 2
    history = [
        AttemptRecord(attempt=1, at=1.0, outcome="dead_letter", httpStatus=400),
        AttemptRecord(attempt=2, at=2.0, outcome="replayed"),
        AttemptRecord(attempt=2, at=3.0, outcome="delivered", httpStatus=200),
    ]
    job = JobStatus(
        jobId="j",
        state="delivered",
        attempts=1,
        lastAttempt=2,
        lastStatus=200,
        createdAt=1.0,
        updatedAt=3.0,
        history=history,
    )
    # When `eventq status` shows it
    text = rendered(job)
    # Then the attempts row names the budget and the last attempt's number, and no error shows
    assert "1 of the retry budget since queued; last attempt #2" in text
    assert [line.split() for line in text.splitlines() if "last status" in line] == [
        ["│", "last", "status", "│", "200", "│"]
    ]
    assert [line.split() for line in text.splitlines() if "last error" in line] == [
        ["│", "last", "error", "│", "-", "│"]
    ]


def test_a_job_whose_attempts_match_its_numbering_shows_just_the_count() -> None:
    job = JobStatus(
        jobId="j", state="delivered", attempts=3, lastAttempt=3, createdAt=1.0, updatedAt=2.0
    )
    assert [line.split() for line in rendered(job).splitlines() if "attempts" in line] == [
        ["│", "attempts", "│", "3", "│"]
    ]
