"""embodied_rl.threads: the `threads` setting (torch's CPU threads) and the scripts that take it."""

from __future__ import annotations

import json
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from script_helpers import CONFIGS, load_script

from embodied_rl import threads
from embodied_rl.threads import cgroup_cpu_quota, resolve_threads, set_threads, usable_cores


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Every test leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cores(monkeypatch):
    """`cores(n)`: this process may use n cores (its CPU affinity), no cgroup quota and no OMP_NUM_THREADS."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: None)

    def use(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return use


def test_auto_divides_the_usable_cores_among_the_parallel_jobs_never_below_one(cores):
    cores(8)
    assert [resolve_threads("auto", jobs) for jobs in (1, 2, 3, 4, 8, 9, 100)] == [8, 4, 2, 2, 1, 1, 1]
    assert resolve_threads() == 8  # auto, one job
    cores(1)
    assert resolve_threads("auto", 1) == resolve_threads("auto", 4) == 1


def test_auto_counts_the_cpu_count_without_an_affinity_call(cores, monkeypatch):
    cores(8)
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert resolve_threads("auto", 2) == 3


def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path, monkeypatch):
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    (v1 / "cpu").mkdir(parents=True)
    assert cgroup_cpu_quota(tmp_path / "none") is None  # no cgroup files: unlimited
    for text, quota in [("max 100000\n", None), ("150000 100000\n", 1.5), ("200000 100000\n", 2.0)]:
        (v2 / "cpu.max").write_text(text)
        assert cgroup_cpu_quota(v2) == quota
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    for text, quota in [("-1\n", None), ("300000\n", 3.0)]:
        (v1 / "cpu" / "cpu.cfs_quota_us").write_text(text)
        assert cgroup_cpu_quota(v1) == quota

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(threads, "CGROUP", v2)  # 2.0 CPUs
    assert usable_cores() == (2, "cgroup CPU quota 2") and resolve_threads("auto", 1) == 2
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 cores, rounded up
    assert set_threads("auto", 2) == "threads: 1 (2 cores (cgroup CPU quota 1.5) / 2 parallel jobs)"
    monkeypatch.setattr(threads, "CGROUP", tmp_path / "none")
    assert usable_cores() == (16, "")


def test_an_explicit_count_is_taken_as_it_is(cores, monkeypatch):
    cores(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(6) == resolve_threads(6, parallel_jobs=4) == 6  # neither divided nor capped
    assert resolve_threads("3") == 3  # as `--threads 3` gives it
    assert set_threads(6, 4) == "threads: 6 (threads=6)"


@pytest.mark.parametrize("setting", [0, -1, "0", "many", "", 2.5, True, None, [2]])
def test_a_bad_setting_is_refused_naming_the_option(setting):
    with pytest.raises(ValueError, match=r"^threads must be auto or an integer >= 1 \(torch's CPU threads\), got "):
        resolve_threads(setting)
    with pytest.raises(ValueError, match=r"^--threads must be auto"):
        set_threads(setting, option="--threads")


@pytest.mark.parametrize("jobs", [0, -2, 1.5, True, "2"])
def test_a_bad_number_of_parallel_jobs_is_refused(jobs):
    with pytest.raises(ValueError, match=r"^parallel_jobs must be an integer >= 1, got "):
        resolve_threads("auto", jobs)


def test_auto_respects_omp_num_threads_and_says_so(cores, monkeypatch):
    cores(8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto", 1) == resolve_threads("auto", 2) == 3  # the user's per-process count
    assert set_threads("auto", 2) == "threads: 3 (OMP_NUM_THREADS=3)"
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: ignored, and said
    assert set_threads("auto", 2) == "threads: 4 (OMP_NUM_THREADS='lots' ignored; 8 cores / 2 parallel jobs)"


def test_set_threads_changes_torchs_thread_count_and_says_why(cores, monkeypatch):
    cores(2)
    torch.set_num_threads(2)
    assert set_threads("auto", 2) == "threads: 1 (2 cores / 2 parallel jobs)"
    assert torch.get_num_threads() == 1
    assert set_threads("auto") == "threads: 2 (2 cores)" and torch.get_num_threads() == 2
    cores(1)
    assert set_threads() == "threads: 1 (1 core)" and torch.get_num_threads() == 1


def test_set_threads_goes_on_when_torch_refuses_new_interop_threads(cores, monkeypatch):
    """torch.set_num_interop_threads raises once parallel work has started (or after a first call)."""

    def refuse(n):
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    cores(2)
    assert set_threads(1) == "threads: 1 (threads=1)" and torch.get_num_threads() == 1


# ---------------------------------------------------------------- the scripts


@pytest.mark.parametrize("script, args", [("benchmark", []), ("make_datasets", ["metaworld"])])
def test_scripts_refuse_a_bad_threads_option(script, args, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script(script).main([*args, "--threads", "0"])
    assert exc.value.code == 2
    error = capsys.readouterr().err
    assert "argument --threads: must be auto or an integer >= 1 (torch's CPU threads), got '0'" in error


def test_benchmark_sets_and_records_the_threads_before_measuring(tmp_path, monkeypatch, capsys):
    benchmark = load_script("benchmark")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    measured = []
    monkeypatch.setattr(benchmark, "benchmark_iql", lambda args, device: measured.append(torch.get_num_threads()) or [])
    torch.set_num_threads(2)
    out = tmp_path / "b.json"
    benchmark.main(["--only", "iql", "--out", str(out), "--threads", "1"])
    assert capsys.readouterr().out.splitlines()[0] == "threads: 1 (--threads=1)"
    assert measured == [1] and json.loads(out.read_text())["machine"]["threads"] == 1


def test_make_datasets_sets_the_threads_before_building(tmp_path, monkeypatch, capsys):
    import embodied_rl.pipelines.offline_datasets as recipes

    built = []
    monkeypatch.setattr(
        recipes, "metaworld_tiers", lambda task, *args, **kwargs: built.append(torch.get_num_threads()) or []
    )
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    torch.set_num_threads(2)
    load_script("make_datasets").main(["metaworld", "--tasks", "reach-v3", "--no-progress", "--threads", "1"])
    assert capsys.readouterr().out.splitlines()[0] == "[make_datasets] threads: 1 (--threads=1)"
    assert built == [1]


def test_collect_sets_the_threads_and_refuses_a_bad_setting(tmp_path, monkeypatch, capsys):
    collect = load_script("collect")
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        assert compose("collect").threads == "auto"
        one, bad = (compose("collect", overrides=[f"threads={value}"]) for value in (1, "many"))
    with pytest.raises(ValueError, match=r"^threads must be auto or an integer >= 1 \(.*\), got 'many'$"):
        collect.collect(bad)

    def stop(*args):  # once the threads are set: before any rollout
        raise KeyboardInterrupt(torch.get_num_threads())

    monkeypatch.setattr(collect.minari_io, "check_writable", stop)
    torch.set_num_threads(2)
    with pytest.raises(KeyboardInterrupt) as exc:
        collect.collect(one)
    assert exc.value.args == (1,) and capsys.readouterr().out.splitlines()[0] == "[collect] threads: 1 (threads=1)"
