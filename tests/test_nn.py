"""embodied_rl.nn: MLPs, vectorised ensembles, the tanh-Normal distribution, the pixel encoder, random shift,
observation encoders and init helpers. Tiny sizes; everything on CPU."""

from __future__ import annotations

import copy
import functools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from embodied_rl.nn import (
    ConvEncoder,
    EnsembleLinear,
    EnsembleMLP,
    ObservationEncoder,
    ReLU,
    TanhNormal,
    log_abs_det_tanh_jacobian,
    mlp,
    orthogonal_init_,
    random_shift,
)


# ---------------------------------------------------------------- mlp
def test_mlp_layout_and_shapes():
    net = mlp(5, (8, 16), 3, activation="elu", layer_norm=True)
    kinds = [type(layer) for layer in net]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.ELU, nn.Linear, nn.LayerNorm, nn.ELU, nn.Linear]
    assert net(torch.randn(4, 7, 5)).shape == (4, 7, 3)
    assert [type(layer) for layer in mlp(5, (), 3, activation=nn.Tanh)] == [nn.Linear]


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        mlp(2, (4,), 1, activation="swishy")


def _compile_and_backward(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.dtype], torch.Tensor]:
    """Compile `net` with inductor's partitioner but keep the graphs as FX (no codegen), run forward and
    backward of sum(net(x)^2). Returns the dtypes the forward graph saves for the backward, and the output."""
    from functorch.compile import min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    saved: list[torch.dtype] = []

    def forward_compiler(graph: torch.fx.GraphModule, _inputs: list) -> torch.fx.GraphModule:
        (output,) = [node for node in graph.graph.nodes if node.op == "output"]
        saved.extend(arg.meta["val"].dtype for arg in output.args[0] if hasattr(arg, "meta") and "val" in arg.meta)
        return graph

    backend = aot_autograd(
        fw_compiler=forward_compiler,
        bw_compiler=lambda graph, _inputs: graph,
        partition_fn=functools.partial(min_cut_rematerialization_partition, compiler="inductor"),
    )
    torch._dynamo.reset()
    out = torch.compile(net, backend=backend, fullgraph=True)(x)
    out.square().sum().backward()
    return saved, out.detach()


def _with_torch_relu(net: nn.Module) -> nn.Module:
    """A copy of `net` with every `ReLU` replaced by `nn.ReLU`."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, ReLU):
                setattr(module, child_name, nn.ReLU())
    return net


@pytest.mark.parametrize("ensemble", [False, True])
def test_relu_equals_nn_relu_eager_and_compiled(ensemble):
    torch.manual_seed(0)
    net = EnsembleMLP(2, 6, (32, 32), 3) if ensemble else mlp(6, (32, 32), 3)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules()) and any(isinstance(m, ReLU) for m in net.modules())
    reference = _with_torch_relu(net)
    assert net.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(64, 6)
    x[0, :] = 0.0  # exact zeros reach the first activation's gradient too
    x_ref, x_eager, x_compiled = (x.clone().requires_grad_(True) for _ in range(3))
    out_ref = reference(x_ref)
    out_ref.square().sum().backward()
    eager = copy.deepcopy(net)
    eager(x_eager).square().sum().backward()
    _, out = _compile_and_backward(net, x_compiled)
    torch.testing.assert_close(out, out_ref.detach())
    for x_grad in (x_eager.grad, x_compiled.grad):
        torch.testing.assert_close(x_grad, x_ref.grad)
    for model in (eager, net):
        for param, param_ref in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(param.grad, param_ref.grad)


def _inductor_writes_bool(net: nn.Module) -> bool:
    """Compile sum(net(x)^2) with inductor (CPU), run forward and backward with frozen weights (SAC's actor loss
    through the critic), and say whether any generated kernel writes a bool tensor."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    x = torch.randn(64, 6, requires_grad=True)
    step = torch.compile(lambda x: net(x).square().sum())
    _, sources = run_and_get_code(lambda: step(x).backward())
    return any("bool*" in source for source in sources)


def test_compiled_relu_saves_no_bool_mask_for_the_backward():
    """Inductor's CPU kernels write bool tensors ~15x slower than ATen. With nn.ReLU and frozen weights the
    partitioner saves the mask x <= 0 as bool, which made compiled SAC slower than eager on CPU. Ours must not."""
    torch.manual_seed(0)
    net = EnsembleMLP(2, 6, (32, 32), 1).requires_grad_(False)
    assert not _inductor_writes_bool(net)
    assert _inductor_writes_bool(_with_torch_relu(net))  # what the workaround is for (revisit after torch updates)


# ---------------------------------------------------------------- ensembles
def test_ensemble_linear_equals_separate_linears():
    torch.manual_seed(0)
    members, batch, in_dim, out_dim = 3, 5, 4, 6
    linears = [nn.Linear(in_dim, out_dim) for _ in range(members)]
    ensemble = EnsembleLinear(members, in_dim, out_dim)
    with torch.no_grad():
        for e, linear in enumerate(linears):
            ensemble.weight[e].copy_(linear.weight.T)  # (out, in) -> (in, out)
            ensemble.bias[e, 0].copy_(linear.bias)

    shared = torch.randn(batch, in_dim)
    expected = torch.stack([linear(shared) for linear in linears])  # (E, B, out)
    torch.testing.assert_close(ensemble(shared), expected)

    per_member = torch.randn(members, batch, in_dim)
    expected = torch.stack([linear(per_member[e]) for e, linear in enumerate(linears)])
    torch.testing.assert_close(ensemble(per_member), expected)

    # Same gradients as well.
    ensemble(per_member).square().sum().backward()
    expected.square().sum().backward()
    for e, linear in enumerate(linears):
        torch.testing.assert_close(ensemble.weight.grad[e], linear.weight.grad.T)
        torch.testing.assert_close(ensemble.bias.grad[e, 0], linear.bias.grad)


def test_ensemble_linear_init_matches_nn_linear_bounds():
    layer = EnsembleLinear(4, 100, 50)
    bound = 1 / math.sqrt(100)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert not torch.equal(layer.weight[0], layer.weight[1])  # members differ


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_mlp_equals_separate_mlps(layer_norm):
    torch.manual_seed(0)
    members, in_dim, hidden, out_dim = 2, 3, (8, 8), 2
    ensemble = EnsembleMLP(members, in_dim, hidden, out_dim, activation="silu", layer_norm=layer_norm)
    nets = [mlp(in_dim, hidden, out_dim, activation="silu", layer_norm=layer_norm) for _ in range(members)]
    with torch.no_grad():
        for ensemble_layer, *member_layers in zip(ensemble.layers, *nets):
            if isinstance(ensemble_layer, EnsembleLinear):
                for e, layer in enumerate(member_layers):
                    layer.weight.copy_(ensemble_layer.weight[e].T)
                    layer.bias.copy_(ensemble_layer.bias[e, 0])
            elif layer_norm and hasattr(ensemble_layer, "weight"):  # EnsembleLayerNorm
                ensemble_layer.weight.uniform_(0.5, 1.5)
                ensemble_layer.bias.uniform_(-0.5, 0.5)
                for e, layer in enumerate(member_layers):
                    layer.weight.copy_(ensemble_layer.weight[e, 0])
                    layer.bias.copy_(ensemble_layer.bias[e, 0])
    x = torch.randn(7, in_dim)
    torch.testing.assert_close(ensemble(x), torch.stack([net(x) for net in nets]))


# ---------------------------------------------------------------- tanh-normal
def test_tanh_normal_log_prob_matches_change_of_variables_reference():
    torch.manual_seed(0)
    loc = torch.randn(64, 3, dtype=torch.float64)
    scale = torch.rand(64, 3, dtype=torch.float64) + 0.1
    dist = TanhNormal(loc, scale)
    action = dist.sample()
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(loc, scale), [torch.distributions.TanhTransform()]
    )
    torch.testing.assert_close(dist.log_prob(action), reference.log_prob(action).sum(-1))


def test_tanh_normal_density_integrates_to_the_gaussian_probabilities():
    """1-D: the density exp(log_prob) integrates to 1 over (-1, 1), and over [a, b] to
    Phi((atanh b - loc) / scale) - Phi((atanh a - loc) / scale)."""
    loc, scale = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[0.8]], dtype=torch.float64)
    dist = TanhNormal(loc, scale)
    y = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)
    density = dist.log_prob(y[:, None], pre_tanh=torch.atanh(y)[:, None]).exp()  # (N,)
    assert torch.trapezoid(density, y).item() == pytest.approx(1.0, abs=1e-5)

    a, b = -0.2, 0.7
    inside = (y >= a) & (y <= b)
    integral = torch.trapezoid(density[inside], y[inside]).item()
    normal = torch.distributions.Normal(loc.squeeze(), scale.squeeze())
    expected = (normal.cdf(torch.tensor(math.atanh(b))) - normal.cdf(torch.tensor(math.atanh(a)))).item()
    assert integral == pytest.approx(expected, abs=1e-5)


def test_tanh_normal_rsample_log_prob_is_consistent_and_stable_at_saturation():
    torch.manual_seed(0)
    loc = torch.randn(128, 4) * 2
    scale = torch.rand(128, 4) + 0.05
    dist = TanhNormal(loc, scale)
    torch.manual_seed(1)
    action, log_prob = dist.rsample_with_log_prob()
    torch.manual_seed(1)
    pre_tanh = loc + scale * torch.randn_like(loc)
    torch.testing.assert_close(action, torch.tanh(pre_tanh))
    torch.testing.assert_close(log_prob, dist.log_prob(action, pre_tanh=pre_tanh), rtol=1e-5, atol=1e-4)

    # Far in the tails tanh(u) rounds to +-1 in float32; the log-probability must stay finite and correct.
    saturated = TanhNormal(torch.full((2, 3), 20.0, requires_grad=True), torch.full((2, 3), 0.5))
    action, log_prob = saturated.rsample_with_log_prob()
    assert torch.all(action == 1.0) and torch.isfinite(log_prob).all()
    log_prob.sum().backward()
    assert torch.isfinite(saturated.loc.grad).all()
    # Boundary actions given without pre_tanh (e.g. from a dataset) are clipped and stay finite.
    assert torch.isfinite(TanhNormal(torch.zeros(1, 2), torch.ones(1, 2)).log_prob(torch.ones(1, 2))).all()


def test_log_abs_det_tanh_jacobian_is_exact_and_finite():
    u = torch.linspace(-8, 8, 101, dtype=torch.float64)
    torch.testing.assert_close(log_abs_det_tanh_jacobian(u), torch.log(1 - torch.tanh(u) ** 2))
    extreme = log_abs_det_tanh_jacobian(torch.tensor([-60.0, 60.0]))
    torch.testing.assert_close(extreme, torch.tensor([2 * (math.log(2) - 60.0)] * 2))


def test_tanh_normal_gradients_flow_through_rsample_and_mode():
    loc = torch.zeros(3, 2, requires_grad=True)
    log_scale = torch.zeros(3, 2, requires_grad=True)
    dist = TanhNormal(loc, log_scale.exp())
    action, log_prob = dist.rsample_with_log_prob()
    (action.sum() + log_prob.sum()).backward()
    assert loc.grad.abs().sum() > 0 and log_scale.grad.abs().sum() > 0
    torch.testing.assert_close(
        TanhNormal(torch.tensor([[0.5]]), torch.tensor([[3.0]])).mode, torch.tanh(torch.tensor([[0.5]]))
    )


# ---------------------------------------------------------------- pixels
@pytest.mark.parametrize("size, channels, conv_out", [(64, 3, 32 * 25 * 25), (84, 9, 32 * 35 * 35)])
def test_conv_encoder_shapes(size, channels, conv_out):
    encoder = ConvEncoder((size, size, channels), feature_dim=16)
    assert encoder.conv_out_dim == conv_out
    images = torch.randint(0, 256, (2, size, size, channels), dtype=torch.uint8)
    features = encoder(images)
    assert features.shape == (2, 16) and features.abs().max() <= 1.0


def test_conv_encoder_channels_first_and_leading_dims():
    torch.manual_seed(0)
    last = ConvEncoder((32, 32, 6), feature_dim=8, num_layers=2)
    first = ConvEncoder((6, 32, 32), feature_dim=8, num_layers=2, channels_last=False)
    first.load_state_dict(last.state_dict())
    images = torch.randint(0, 256, (3, 4, 32, 32, 6), dtype=torch.uint8)  # (B, T, H, W, C)
    out = last(images)
    assert out.shape == (3, 4, 8)
    torch.testing.assert_close(first(images.permute(0, 1, 4, 2, 3)), out)
    torch.testing.assert_close(out[1, 2], last(images[1, 2:3])[0])


def test_conv_encoder_mixed_precision_computes_in_bfloat16_and_returns_float32():
    """mixed_precision=True: the convolutions and the Linear run in bfloat16, the LayerNorm, the features and
    the weights' gradients are float32, and the features stay close to the float32 encoder's."""
    torch.manual_seed(0)
    full = ConvEncoder((16, 16, 3), feature_dim=8, num_filters=8, num_layers=2)
    mixed = ConvEncoder((16, 16, 3), feature_dim=8, num_filters=8, num_layers=2, mixed_precision=True)
    mixed.load_state_dict(full.state_dict())
    seen = {}
    mixed.convs[0].register_forward_hook(lambda _m, _args, out: seen.update(conv=out.dtype))
    mixed.projection[1].register_forward_pre_hook(lambda _m, args: seen.update(norm=args[0].dtype))
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    features = mixed(images)
    assert seen == {"conv": torch.bfloat16, "norm": torch.float32} and features.dtype == torch.float32
    torch.testing.assert_close(features, full(images), rtol=0, atol=5e-2)
    features.sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in mixed.parameters())


def test_conv_encoder_scales_pixels_to_plus_minus_half():
    """The convolutions see uint8 pixels as x / 255 - 0.5, channels first (SAC-AE / DrQ)."""
    encoder = ConvEncoder((16, 16, 3), feature_dim=4, num_layers=1)
    seen = []
    encoder.convs[0].register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    encoder(images)
    torch.testing.assert_close(seen[0], images.permute(0, 3, 1, 2).float() / 255.0 - 0.5)


def _shift_reference(image: torch.Tensor, pad: int, dy: int, dx: int) -> torch.Tensor:
    """Replicate-pad an (H, W, C) image by `pad` and crop at offset (pad + dy, pad + dx)."""
    padded = torch.nn.functional.pad(image.permute(2, 0, 1)[None].float(), (pad,) * 4, mode="replicate")[0]
    height, width = image.shape[:2]
    crop = padded[:, pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    return crop.permute(1, 2, 0).to(image.dtype)


def test_random_shift_is_a_replicate_padded_crop():
    torch.manual_seed(0)
    pad = 2
    images = torch.randint(0, 256, (16, 9, 11, 3), dtype=torch.uint8)
    shifted = random_shift(images, pad)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    offsets = set()
    for image, out in zip(images, shifted):
        matches = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.equal(out, _shift_reference(image, pad, dy, dx))
        ]
        assert matches, "output is not a shifted crop of the padded input"
        offsets.add(matches[0])
    assert len(offsets) > 3  # independent offsets per sample
    rows, cols = {dy for dy, _ in offsets}, {dx for _, dx in offsets}
    assert min(rows) < 0 < max(rows) and min(cols) < 0 < max(cols)  # shifts both ways along both axes
    assert any(dy != dx for dy, dx in offsets)  # vertical and horizontal shifts drawn independently
    assert torch.equal(random_shift(images, 0), images)
    torch.manual_seed(1)
    channels_first = random_shift(images.permute(0, 3, 1, 2), pad, channels_last=False)
    torch.manual_seed(1)
    torch.testing.assert_close(channels_first, random_shift(images, pad).permute(0, 3, 1, 2))


# ---------------------------------------------------------------- observation encoders
def test_observation_encoder_modes():
    state = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    pixels = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)

    encoder = ObservationEncoder(state)
    assert encoder.out_dim == 5 and not encoder.has_pixels
    assert list(encoder.parameters()) == []
    x = torch.randn(2, 5)
    assert torch.equal(encoder(x), x)

    encoder = ObservationEncoder(pixels, feature_dim=7, num_layers=2)
    assert encoder.out_dim == 7 and encoder.channels_last
    assert encoder(images).shape == (2, 7)

    encoder = ObservationEncoder(gym.spaces.Dict({"pixels": pixels, "state": state}), feature_dim=7, num_layers=2)
    assert encoder.out_dim == 12
    assert encoder({"pixels": images, "state": x}).shape == (2, 12)

    assert ObservationEncoder(gym.spaces.Box(0, 255, (9, 32, 32), np.uint8), num_layers=2).channels_last is False


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(3),
        gym.spaces.Box(0, 1, (4, 4), np.float32),
        gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (3,), np.float32)}),
    ],
)
def test_observation_encoder_rejects_unsupported_spaces(space):
    with pytest.raises(ValueError):
        ObservationEncoder(space)


# ---------------------------------------------------------------- init
def test_orthogonal_init():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4), nn.Conv2d(3, 4, 3), EnsembleLinear(3, 8, 4))
    orthogonal_init_(net, gain=2.0)
    weight = net[0].weight  # (4, 8): orthonormal rows times the gain
    torch.testing.assert_close(weight @ weight.T, 4.0 * torch.eye(4), atol=1e-5, rtol=0)
    conv = net[1].weight.flatten(1)  # (4, 27)
    torch.testing.assert_close(conv @ conv.T, 2.0 * torch.eye(4), atol=1e-5, rtol=0)  # ReLU gain^2 = 2
    for member in net[2].weight:  # (8, 4): orthonormal columns
        torch.testing.assert_close(member.T @ member, 4.0 * torch.eye(4), atol=1e-5, rtol=0)
    assert all(torch.all(layer.bias == 0) for layer in net)
