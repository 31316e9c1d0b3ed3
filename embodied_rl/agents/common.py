"""Pieces every learner shares: device choice, observation/batch conversion, optimisers, Polyak averaging,
and the two accelerations of an update step (`torch.compile`, CUDA graphs)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from embodied_rl.nn import EnsembleMLP
from embodied_rl.nn.mlp import Activation
from embodied_rl.nn.observation import Observation

BATCH_KEYS = ("obs", "action", "reward", "next_obs", "terminated")


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_settings(compile: bool, compile_mode: str | None, cudagraphs: bool) -> None:
    """A `compile_mode` torch.compile knows, and, when compiling, none that makes CUDA graphs of its own inside
    ours."""
    if compile_mode not in COMPILE_MODES:
        modes = ", ".join("null" if mode is None else mode for mode in COMPILE_MODES)
        raise ValueError(f"compile_mode={compile_mode!r}; torch.compile takes one of {modes}")
    if compile and cudagraphs and compile_mode in ("reduce-overhead", "max-autotune"):
        raise ValueError(
            f"compile_mode={compile_mode!r} makes CUDA graphs of its own, which cannot run inside cudagraphs=True's "
            "graph: use compile_mode=null or max-autotune-no-cudagraphs with it, or cudagraphs=false"
        )


# dtypes a batch field may have (float32 for the others): pixels stay uint8, gymnasium's `terminated` is bool
BATCH_DTYPES = {
    "obs": (torch.float32, torch.uint8),
    "next_obs": (torch.float32, torch.uint8),
    "terminated": (torch.float32, torch.bool),
}


def batch_fields(
    batch: Any, keys: Iterable[str] = BATCH_KEYS, action_dim: int | None = None, device: torch.device | None = None
) -> dict[str, Any]:
    """The named fields of a batch given as a dict or as an object with attributes (e.g. `Transitions`),
    checked (`check_batch`) so that a mistake is one clear error, not a silent broadcast or a failure deep in
    torch."""
    keys = tuple(keys)
    get = batch.get if isinstance(batch, Mapping) else lambda key: getattr(batch, key, None)
    fields = {key: get(key) for key in keys}
    missing = [key for key, value in fields.items() if value is None]
    if missing:
        raise KeyError(f"the batch has no {', '.join(missing)} (it needs {', '.join(keys)})")
    check_batch(fields, action_dim, device)
    return fields


def check_batch(fields: Mapping[str, Any], action_dim: int | None = None, device: torch.device | None = None) -> None:
    """Every field a tensor of a `BATCH_DTYPES` dtype on `device`'s kind (cpu / cuda), all with one leading
    batch size B; `action` (B, action_dim); `reward` / `terminated` B values, (B,) or (B, 1). Shapes and dtypes
    only: no host synchronisation (about 9 us per call on a 2-core CPU)."""
    tensors = {}
    for key, value in fields.items():  # Dict observations: one tensor per key
        parts = value.items() if isinstance(value, Mapping) else [(None, value)]
        tensors.update({key if part is None else f"{key}.{part}": item for part, item in parts})
    size = None
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"batch[{name!r}] is a {type(tensor).__name__}; update() takes torch tensors")
        if device is not None and tensor.device.type != device.type:
            raise ValueError(f"batch[{name!r}] is on {tensor.device}, the agent on {device}")
        allowed = BATCH_DTYPES.get(name.split(".")[0], (torch.float32,))
        if tensor.dtype not in allowed:
            raise TypeError(f"batch[{name!r}] is {tensor.dtype}; use {' or '.join(map(str, allowed))}")
        rows = tensor.shape[0] if tensor.dim() else 1
        size = rows if size is None else size
        if rows != size or (name in ("reward", "terminated") and tensor.numel() != size):
            shapes = {key: tuple(value.shape) for key, value in tensors.items()}
            raise ValueError(f"batch fields of different batch sizes (one value per transition): {shapes}")
    if action_dim is not None and "action" in tensors and tuple(tensors["action"].shape[1:]) != (action_dim,):
        shape = tuple(tensors["action"].shape)
        raise ValueError(f"batch['action'] has shape {shape}, not (B, {action_dim})")


def observation_to_tensor(
    obs: np.ndarray | dict[str, np.ndarray], observation_space: gym.Space, device: torch.device
) -> tuple[Observation, bool]:
    """Numpy observation(s) -> tensors on `device` with a leading batch dim, and whether `obs` was batched.

    uint8 stays uint8 (pixels are scaled inside the encoder), everything else becomes float32.
    """
    if isinstance(observation_space, gym.spaces.Dict):
        if not isinstance(obs, Mapping) or set(obs) != set(observation_space.spaces):
            keys = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
            raise ValueError(f"observation {keys} for a Dict space of {sorted(observation_space.spaces)}")
        batched = np.ndim(obs["pixels"]) == len(observation_space["pixels"].shape) + 1
        tensors = {key: _array_to_tensor(obs[key], batched, observation_space[key], device) for key in obs}
        return tensors, batched
    batched = np.ndim(obs) == len(observation_space.shape) + 1
    return _array_to_tensor(obs, batched, observation_space, device), batched


def _array_to_tensor(array: np.ndarray, batched: bool, space: gym.Space, device: torch.device) -> torch.Tensor:
    array = np.asarray(array)
    if tuple(array.shape[int(batched) :]) != tuple(space.shape) or array.ndim != len(space.shape) + int(batched):
        raise ValueError(f"observation of shape {array.shape} for a space of shape {space.shape} (or (B, *shape))")
    if space.dtype == np.uint8 and array.dtype != np.uint8:  # pixels are scaled by 1/255 in the encoder
        raise TypeError(f"pixel observations must be uint8 like the space's, got {array.dtype}")
    dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32
    tensor = torch.as_tensor(array, dtype=dtype, device=device)
    return tensor if batched else tensor.unsqueeze(0)


def check_state_keys(agent: Any, state: Mapping[str, Any]) -> None:
    """Refuse, before anything is loaded, a `state_dict` of another kind of agent (its parts differ from
    `agent.state_dict()`'s), which would otherwise load halfway and then fail on a missing key."""
    expected, given = set(agent.state_dict()), set(state)
    if given != expected:
        raise ValueError(
            f"a state_dict for {type(agent).__name__} needs {sorted(expected)}; this one has {sorted(given)} "
            f"(missing {sorted(expected - given)}, unexpected {sorted(given - expected)}): another agent's?"
        )


def make_adam(params: Iterable[torch.Tensor], lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters; about 3x faster than the default on CPU).
    `capturable=True` keeps its step counters on the GPU so `step()` can live in a CUDA graph."""
    return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)`, keeping this optimiser's `capturable` / `fused` flags: those are
    choices for the device in use (a checkpoint written by a CUDA-graph run must load on a CPU), not
    training state. `state` is loaded as is; pass a copy if it must stay independent."""
    runtime_flags = [{key: group[key] for key in ("capturable", "fused")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, runtime_flags):
        group.update(flags)


@torch.no_grad()
def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging, theta_target <- (1 - tau) * theta_target + tau * theta (SAC, Haarnoja et al. 2018,
    Algorithm 1), as one fused multi-tensor lerp."""
    target_params = list(target.parameters())
    if target_params:
        torch._foreach_lerp_(target_params, list(source.parameters()), tau)


def detached_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers of `module`, detached: use with `torch.func.functional_call` to evaluate a
    network whose weights must receive no gradient (e.g. the critic inside the actor loss)."""
    state = {name: p.detach() for name, p in module.named_parameters()}
    state.update(dict(module.named_buffers()))
    return state


class CudaGraphStep:
    """Run `fn(*args)` (tensors, or dicts/tuples of tensors, in and out) as a captured CUDA graph.

    The first `warmup_calls` calls run normally on a side stream (this is where `torch.compile` compiles and
    lazy state such as optimiser moments is created); the next call captures `fn` once into a graph with
    static input buffers, and every call from then on copies its inputs into those buffers and replays the
    graph. Every call does the work of `fn`, so warm-up calls are real updates. Outputs are cloned, so a
    caller may keep them across calls. Inputs must keep their shapes; `fn` must be free of host syncs and
    must build its optimisers with `capturable=True`.
    """

    def __init__(self, fn: Callable[..., Any], warmup_calls: int = 3):
        self.fn = fn
        self.warmup_calls = warmup_calls
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: list[torch.Tensor] = []
        self.input_spec: pytree.TreeSpec | None = None
        self.static_outputs: Any = None

    def __call__(self, *args: Any) -> Any:
        if self.graph is None and self.calls < self.warmup_calls:
            self.calls += 1
            side_stream = torch.cuda.Stream()
            side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side_stream):
                out = self.fn(*args)
            torch.cuda.current_stream().wait_stream(side_stream)
            return out
        leaves, spec = pytree.tree_flatten(args)
        if self.graph is None:
            self.static_inputs = [leaf.clone() for leaf in leaves]
            self.input_spec = spec
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_outputs = self.fn(*pytree.tree_unflatten(self.static_inputs, spec))
            # Capturing records the kernels without running them: the replay below does this call's work.
        else:
            if spec != self.input_spec:
                raise ValueError(f"a CUDA-graph step was captured for inputs {self.input_spec}, got {spec}")
            for static, new in zip(self.static_inputs, leaves):
                if static.shape != new.shape:
                    raise ValueError(
                        f"a CUDA-graph step was captured for inputs of shape {tuple(static.shape)}, got "
                        f"{tuple(new.shape)}; keep the batch size fixed or use cudagraphs=False"
                    )
                static.copy_(new, non_blocking=True)
        self.graph.replay()
        # clones the tensors; pytree counts None (SAC's target step returns it) as a leaf, so keep non-tensors
        return pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, self.static_outputs)


def maybe_cuda_graph(fn: Callable[..., Any], cudagraphs: bool, device: torch.device) -> Callable[..., Any]:
    """`CudaGraphStep(fn)` on a CUDA device, or `fn` unchanged; `cudagraphs=True` off CUDA warns and falls
    back to running `fn` normally."""
    if not cudagraphs:
        return fn
    if device.type != "cuda":
        # one location for every step an agent wraps: Python shows the warning once, not once per step
        warnings.warn("cudagraphs=True needs a CUDA device; running without CUDA graphs", stacklevel=1)
        return fn
    return CudaGraphStep(fn)


class Critic(nn.Module):
    """`num_critics` Q-functions as one ensemble (one vmapped MLP): (features or state (B, F), action (B, A)) ->
    Q values (E, B). SAC, IQL and TD3+BC share it; `layer_norm` after each hidden layer (SAC's option)."""

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        activation: Activation,
        num_critics: int,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.q = EnsembleMLP(num_critics, feature_dim + action_dim, hidden_dims, 1, activation, layer_norm)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q(torch.cat([features, action], dim=-1)).squeeze(-1)  # (E, B, 1) -> (E, B)
