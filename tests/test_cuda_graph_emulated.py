"""`CudaGraphStep` on CPU, with torch.cuda's stream and graph API emulated: the warm-up, capture and replay
bookkeeping that every `cudagraphs=True` agent relies on runs in CI, not only on a GPU (`-m gpu` runs the
real graphs).

The emulation: streams do nothing; a capture runs the step for real (a real capture only records its kernels,
so the replay that follows, which does that call's work on a GPU, is skipped once); every later replay runs
the step again on the static inputs and writes its results into the static outputs in place, as a graph's
kernels would. Python side effects inside a step happen at every emulated replay but only once on a GPU:
this cannot catch those.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_offline_agents import assert_same_metrics, make
from test_offline_agents import make_batch as offline_batch
from test_offline_agents import parameters as offline_parameters
from test_sac import make_agent as make_sac
from test_sac import make_batch as sac_batch
from test_sac import parameters as sac_parameters
from torch.utils import _pytree as pytree

import embodied_rl.agents.bc
import embodied_rl.agents.iql
import embodied_rl.agents.sac
import embodied_rl.agents.td3bc
from embodied_rl.agents import common

UPDATES = 7  # 3 warm-up calls, the capture, 3 replays


class EmulatedStream:
    def wait_stream(self, other) -> None:
        pass


class EmulatedGraph:
    """The graph of one `CudaGraphStep`: replays re-run its function on its static inputs."""

    def __init__(self, step: common.CudaGraphStep):
        self.step, self.replays = step, 0

    def replay(self) -> None:
        self.replays += 1
        if self.replays == 1:  # the capture already did this call's work
            return
        step = self.step
        outputs = step.fn(*pytree.tree_unflatten(step.static_inputs, step.input_spec))
        for static, new in zip(pytree.tree_leaves(step.static_outputs), pytree.tree_leaves(outputs), strict=True):
            if isinstance(static, torch.Tensor):
                static.copy_(new)


@pytest.fixture
def emulated_cuda_graphs(monkeypatch):
    """`cudagraphs=True` agents on CPU wrap their steps in `CudaGraphStep`, over the emulated API."""
    monkeypatch.setattr(torch.cuda, "Stream", EmulatedStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args, **kwargs: EmulatedStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())
    call = common.CudaGraphStep.__call__

    def call_with_its_own_graph(step, *args):
        monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: EmulatedGraph(step))
        return call(step, *args)

    monkeypatch.setattr(common.CudaGraphStep, "__call__", call_with_its_own_graph)
    wrap = lambda fn, cudagraphs, device: common.CudaGraphStep(fn) if cudagraphs else fn  # noqa: E731
    for module in (embodied_rl.agents.sac, embodied_rl.agents.iql, embodied_rl.agents.td3bc, embodied_rl.agents.bc):
        monkeypatch.setattr(module, "maybe_cuda_graph", wrap)


def run_updates(agent, batches) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    return [agent.update(batch) for batch in batches]


@pytest.mark.parametrize("hparams", [{}, {"max_grad_norm": 1.0, "actor_update_every": 2, "target_update_every": 2}])
def test_sac_with_emulated_cuda_graphs_equals_eager(emulated_cuda_graphs, hparams):
    batches = [sac_batch(i) for i in range(UPDATES)]
    eager, graphed = make_sac(seed=0, **hparams), make_sac(seed=0, cudagraphs=True, **hparams)
    assert isinstance(graphed._critic_step, common.CudaGraphStep)
    for expected, got in zip(run_updates(eager, batches), run_updates(graphed, batches), strict=True):
        assert_same_metrics(expected, got)
    for x, y in zip(sac_parameters(eager), sac_parameters(graphed), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", ["iql_schedule", "td3bc", "bc_nll", "bc_mse"])
def test_offline_agents_with_emulated_cuda_graphs_equal_eager(emulated_cuda_graphs, name):
    batches = [offline_batch(i) for i in range(UPDATES)]
    eager, graphed = make(name, seed=0, normalize_obs=False), make(name, seed=0, normalize_obs=False, cudagraphs=True)
    for expected, got in zip(run_updates(eager, batches), run_updates(graphed, batches), strict=True):
        assert_same_metrics(expected, got)
    for x, y in zip(offline_parameters(eager), offline_parameters(graphed), strict=True):
        assert torch.equal(x, y)


def test_a_step_keeps_its_input_shapes_and_outputs_outlive_the_next_call(emulated_cuda_graphs):
    step = common.CudaGraphStep(lambda x: {"double": 2 * x, "nothing": None})
    outputs = [step(torch.full((3,), float(i))) for i in range(5)]
    assert [float(out["double"][0]) for out in outputs] == [0.0, 2.0, 4.0, 6.0, 8.0]  # clones, not the buffers
    assert all(out["nothing"] is None for out in outputs)
    with pytest.raises(ValueError, match=r"captured for inputs of shape \(3,\), got \(4,\)"):
        step(torch.zeros(4))


@pytest.mark.parametrize("agent", ["sac", "iql"])
def test_compile_modes_are_checked_before_anything_compiles(agent):
    build = make_sac if agent == "sac" else lambda **kwargs: make("iql", **kwargs)
    with pytest.raises(ValueError, match="compile_mode='fast'; torch.compile takes one of"):
        build(compile_mode="fast")
    with pytest.raises(ValueError, match="makes CUDA graphs of its own"):  # they cannot nest in ours
        build(compile=True, compile_mode="reduce-overhead", cudagraphs=True)
    with pytest.warns(UserWarning, match="cudagraphs=True needs a CUDA device"):  # accepted; off CUDA, no graphs
        build(compile_mode="max-autotune-no-cudagraphs", cudagraphs=True)
