"""Shared network blocks: MLPs, vectorised ensembles, the pixel encoder, the tanh-Normal policy distribution,
observation encoders, image augmentation, init helpers, and the supervised fit loop of learned labellers and
reward models."""

from embodied_rl.nn.augment import random_shift
from embodied_rl.nn.cnn import ConvEncoder
from embodied_rl.nn.distributions import TanhNormal, log_abs_det_tanh_jacobian
from embodied_rl.nn.ensemble import EnsembleLayerNorm, EnsembleLinear, EnsembleMLP
from embodied_rl.nn.fit import FitReport, FitSettings, fit, split_validation
from embodied_rl.nn.init import default_init_, orthogonal_init_, uniform_last_layer_init_
from embodied_rl.nn.mlp import ACTIVATIONS, ReLU, activation_class, mlp
from embodied_rl.nn.observation import ObservationEncoder, is_channels_last, is_pixel_space, map_pixels

__all__ = [
    "ACTIVATIONS",
    "ConvEncoder",
    "EnsembleLayerNorm",
    "EnsembleLinear",
    "EnsembleMLP",
    "FitReport",
    "FitSettings",
    "ObservationEncoder",
    "ReLU",
    "TanhNormal",
    "activation_class",
    "default_init_",
    "fit",
    "is_channels_last",
    "is_pixel_space",
    "log_abs_det_tanh_jacobian",
    "map_pixels",
    "mlp",
    "orthogonal_init_",
    "random_shift",
    "split_validation",
    "uniform_last_layer_init_",
]
