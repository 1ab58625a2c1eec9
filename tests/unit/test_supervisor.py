"""`eventq worker --processes N`: how many processes, their command lines, restarts."""

from __future__ import annotations

from pathlib import Path

from eventq.settings import settings_from_env
from eventq_cli.supervisor import (
    MAX_QUICK_EXITS,
    available_cpus,
    child_argv,
    child_env,
    cpu_quota,
    restart_delay_s,
    worker_processes,
)


def test_a_cgroup_v2_quota_of_one_and_a_half_cpus_reads_as_1_5(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5


def test_no_quota_reads_as_none_for_v2_max_v1_minus_one_and_no_cgroup(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1) is None
    assert cpu_quota(tmp_path / "absent") is None


def test_a_cgroup_v1_quota_of_two_cpus_reads_as_2(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path) == 2.0


def test_the_cpus_available_are_the_affinity_lowered_by_the_quota_rounded_up() -> None:
    assert available_cpus(16, None) == 16
    assert available_cpus(16, 1.5) == 2
    assert available_cpus(2, 8.0) == 2
    assert available_cpus(4, 0.2) == 1


def test_processes_come_from_the_option_then_the_setting_then_the_cpus() -> None:
    unset = settings_from_env({})
    assert worker_processes(unset, 3) == 3
    assert worker_processes(settings_from_env({"EVENTQ_WORKER_PROCESSES": "5"})) == 5
    assert worker_processes(unset) >= 1


def test_each_child_gets_a_numbered_node_name_and_the_other_celery_arguments() -> None:
    settings = settings_from_env({"EVENTQ_QUEUE": "live", "EVENTQ_BULK_QUEUE": "bulk"})
    argv = child_argv(settings, 2, ["-c", "8", "-E"])
    assert argv[argv.index("--hostname") + 1] == "eventq2@%h"
    assert argv[argv.index("-Q") + 1] == "live,bulk"
    assert argv[-3:] == ["-c", "8", "-E"]
    named = child_argv(settings, 1, ["-n", "deliver@box", "--hostname=ignored@x", "-c", "8"])
    # the last hostname given wins, as in `celery worker`; it appears once, numbered
    assert named.count("--hostname") == 1
    assert named[named.index("--hostname") + 1] == "ignored1@x"
    assert "-n" not in named


def test_children_write_metrics_for_the_supervisor_to_serve_and_serve_none_themselves() -> None:
    env = child_env({"A": "b", "EVENTQ_METRICS_PORT": "9808"}, "/tmp/m")
    assert env == {"A": "b", "EVENTQ_METRICS_PORT": "0", "PROMETHEUS_MULTIPROC_DIR": "/tmp/m"}
    # a lone worker (no supervisor) keeps its own port
    assert child_env({"EVENTQ_METRICS_PORT": "9808"}) == {"EVENTQ_METRICS_PORT": "9808"}


def test_a_child_that_ran_restarts_at_once_one_dying_at_start_backs_off_then_gives_up() -> None:
    assert restart_delay_s(0) == 0.0
    assert [restart_delay_s(n) for n in range(1, MAX_QUICK_EXITS)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay_s(MAX_QUICK_EXITS) is None
