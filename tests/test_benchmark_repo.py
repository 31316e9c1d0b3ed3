"""`scripts/benchmark.py --only repo` (docs/speed.md, "RePo"): RePo's update rows and its env rows, at a tiny size."""

from __future__ import annotations

import json

import pytest
import torch
from script_helpers import load_script

TINY = ["embed_dim=32", "cnn_depth=4", "deter_dim=16", "stoch_dim=4", "hidden_dim=16", "horizon=3"]


def tiny_args(out, device: str = "cpu", *extra: str) -> list[str]:
    args = ["--only", "repo", "--devices", device, "--repo-batches", "2x4,3x5", "--repeats", "2"]
    args += ["--repo-env-steps", "2", "--threads", "1", "--out", str(out), *extra]
    for setting in TINY:
        args += ["--repo-set", setting]
    return args


def run_benchmark(args: list[str]) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        load_script("benchmark").main(args)
    finally:
        torch.set_num_threads(threads)  # the script sets torch's threads for the whole process
    return json.loads(open(args[args.index("--out") + 1]).read())["results"]


def test_benchmark_repo_prints_update_and_env_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = run_benchmark(tiny_args(tmp_path / "repo.json"))
    updates = [row for row in rows if row["bench"] == "repo_update"]
    # compiled is left out on CPU unless --repo-compile (compiling takes minutes there)
    assert [(r["batch"], r["objective"], r["mode"]) for r in updates] == [
        (batch, objective, mode)
        for batch in ("2x4", "3x5")
        for objective in ("repo", "repo_decoder", "dreamer")
        for mode in ("eager", "bf16")
    ]
    for row in updates:
        assert row["device"] == "cpu" and row["threads"] == 1 and row["repeats"] == 2
        assert row["updates_per_s"] > 0 and row["s_per_update"] == pytest.approx(1 / row["updates_per_s"])
        assert "host_syncs" not in row and "compile_s" not in row  # CUDA only; compiled only
        if row["mode"] == "eager":
            assert row["over_eager"] == 1
    env = [row for row in rows if row["bench"] == "repo_env"]
    assert [(r["obs"], r["policy"]) for r in env] == [
        (obs, policy)
        for obs in ("pixels64-train-distractors", "pixels64-train-distractors-noshadows")
        for policy in ("random", "repo_act(cpu)")
    ]
    for row in env:
        assert row["task"] == "dmc/walker-walk"
        assert row["env_steps_per_s"] == pytest.approx(2 * row["agent_steps_per_s"])  # action repeat 2
        assert (row["act_ms"] > 0) == (row["policy"] != "random")
    assert "bench=repo_update | device=cpu | objective=repo | mode=eager | batch=2x4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--repo-batches", "50"], "--repo-batches: '50' is not BxL"),
        (["--repo-batches", "4x1"], "--repo-batches: '4x1': B must be >= 1 and L >= 2"),
        (["--repo-objectives", "repo,elbo"], "each must be one of repo, repo_decoder, dreamer"),
        (["--repo-set", "cnn_depth"], "--repo-set: 'cnn_depth' is not KEY=VALUE"),
        (["--repo-set", "cnn_width=4"], "--repo-set: unknown RePo config keys ['cnn_width']"),
        (["--repo-set", "horizon=0"], "--repo-set: invalid RePo settings"),
    ],
)
def test_benchmark_repo_rejects_bad_settings_before_measuring(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    benchmark = load_script("benchmark")
    monkeypatch.setattr(benchmark, "benchmark_repo", lambda *a: pytest.fail("measured despite a bad setting"))
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_info:
            benchmark.main(["--only", "repo", "--threads", "1", "--out", str(tmp_path / "x.json"), *extra])
    finally:
        torch.set_num_threads(threads)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_benchmark_repo_on_cuda_counts_no_host_sync(tmp_path):
    """Issue 23: on a GPU, an update on a sampled batch makes no host sync (the full-size figure is the
    benchmark's `host_syncs` column in gpu_check's bench_repo step)."""
    args = tiny_args(tmp_path / "repo.json", "cuda", "--repo-batches", "2x4", "--repo-objectives", "repo,dreamer")
    rows = run_benchmark([*args, "--repo-env-steps", "0"])
    updates = [row for row in rows if row["bench"] == "repo_update"]
    assert {row["mode"] for row in updates} == {"eager", "bf16", "compiled"}
    assert all(row["compile_s"] >= 0 for row in updates if row["mode"] == "compiled")
    assert {(row["objective"], row["mode"]): row["host_syncs"] for row in updates} == {
        (row["objective"], row["mode"]): 0 for row in updates
    }
