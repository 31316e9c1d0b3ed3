"""Visual distractors for RePo-style robustness experiments.

RePo (Zhu et al., NeurIPS 2023, "RePo: Resilient Model-Based RL by Regularizing Posterior
Predictability") learns a world model from pixels whose task-irrelevant content keeps changing:
DeepMind Control with the static background replaced by natural videos, and manipulation scenes with
changing backgrounds, textures and lighting. It then adapts only the encoder at test time to
distractors never seen in training. This module produces such observations for the MuJoCo suites of
this package (Meta-World, gymnasium locomotion and the DeepMind Control Suite), procedurally, so nothing
is downloaded (procedural videos stand in for RePo's Kinetics clips):

- ``background``: pixels of the background (sky, floor, table, walls) found by a segmentation render
  are replaced by a moving procedural pattern that changes every step, like a video;
- ``texture``: scenery and static decor geoms get random colours (flat or on grey textures) each episode;
- ``bodies``: visual-only geoms float through the workspace on smooth paths (physics never sees them);
- ``lighting``: each episode tints, dims or brightens the lights and tilts the directional ones;
- ``camera`` (opt-in): each episode shifts and tilts the camera slightly.

Two splits, ``"train"`` and ``"test"``, draw every parameter from disjoint ranges (hue bands, pattern
families, spatial-frequency bands, body shapes, light and camera ranges), so the test split is a
genuine distribution shift for test-time adaptation. Everything is applied to the render scene
(``mjvScene``) of the wrapper's own renderer, never to ``MjModel``/``MjData``: the dynamics, the base
env's own renders and other wrappers are untouched, and there is nothing to restore on close.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from .config import DEFAULT_DISTRACTOR_KINDS as DEFAULT_KINDS
from .config import DISTRACTOR_KINDS as KINDS
from .rendering import close_renderer, open_renderer

SPLITS = ("train", "test")
DEFAULT_IMAGE_SIZE = 64

Band = tuple[float, float]

_GEOM = int(mujoco.mjtObj.mjOBJ_GEOM)
_BODY = int(mujoco.mjtObj.mjOBJ_BODY)
_CAMERA = int(mujoco.mjtObj.mjOBJ_CAMERA)
_TEXROLE_RGB = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)


# ---------------------------------------------------------------------------------------------------------
# Split specifications: every range of "train" is disjoint from the matching range of "test".
# ---------------------------------------------------------------------------------------------------------


def alternate_hue_bands(parity: int, n_bands: int = 12, margin: float = 0.008) -> tuple[Band, ...]:
    """Every other twelfth of the colour wheel (even twelfths for train, odd for test), minus a margin.

    Both splits cover the whole spectrum, yet no hue belongs to both; the margin keeps colours apart
    even after rounding to uint8.
    """
    return tuple((k / n_bands + margin, (k + 1) / n_bands - margin) for k in range(parity, n_bands, 2))


@dataclass(frozen=True)
class SplitSpec:
    """The parameter ranges one split draws from."""

    hue_bands: tuple[Band, ...]  # hues (in [0, 1)) of every colour: backgrounds, textures, bodies, lights
    background_families: tuple[str, ...]  # procedural pattern families for the background
    spatial_frequency: Band  # background pattern frequency, cycles per image width
    body_shapes: tuple[int, ...]  # mjtGeom types of the distractor bodies
    light_intensity: tuple[Band, ...]  # multiplier of every light's colour
    light_tilt_deg: Band  # angle between each directional light's old and new direction
    camera_tilt_deg: Band  # rotation of the camera about its own position
    camera_shift: Band  # camera displacement, in units of the suite's length scale


SPLIT_SPECS: dict[str, SplitSpec] = {
    "train": SplitSpec(
        hue_bands=alternate_hue_bands(0),
        background_families=("waves", "noise"),
        spatial_frequency=(0.75, 2.0),
        body_shapes=(int(mujoco.mjtGeom.mjGEOM_SPHERE), int(mujoco.mjtGeom.mjGEOM_BOX)),
        light_intensity=((0.8, 1.25),),
        light_tilt_deg=(0.0, 12.0),
        camera_tilt_deg=(0.0, 1.5),
        camera_shift=(0.0, 0.015),
    ),
    "test": SplitSpec(
        hue_bands=alternate_hue_bands(1),
        background_families=("rings", "blobs"),
        spatial_frequency=(2.5, 4.5),
        body_shapes=(
            int(mujoco.mjtGeom.mjGEOM_CAPSULE),
            int(mujoco.mjtGeom.mjGEOM_CYLINDER),
            int(mujoco.mjtGeom.mjGEOM_ELLIPSOID),
        ),
        light_intensity=((0.45, 0.7), (1.4, 1.8)),
        light_tilt_deg=(13.0, 25.0),
        camera_tilt_deg=(1.6, 3.0),
        camera_shift=(0.016, 0.03),
    ),
}


# ---------------------------------------------------------------------------------------------------------
# Suite profiles: which geoms are background, where the workspace is.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteProfile:
    """What counts as scenery in one suite and where distractor bodies may fly.

    Background geoms are those of the world body (only those of ``scenery_geom_types`` when given) plus
    those of ``scenery_bodies``; ``texture`` recolours them and the geoms of ``decor_bodies``.
    ``scenery_alpha`` is how much of the rendered scenery stays visible under the pattern (the sky is
    always fully replaced).

    Distractor bodies fly in a box of ``workspace_centre`` +- ``workspace_half_extent``: world coordinates
    in metres (moved with the root body's (x, y) when ``follows_robot``), or, with ``camera_relative``,
    (right, up, depth) coordinates of the camera in units of half the view's width at the box's depth,
    around a point on the camera's axis just behind the root body (in front of it when that point would be
    under the floor, as for top-down views), so they stay in view whatever the camera.
    """

    name: str
    scenery_bodies: tuple[str, ...]
    decor_bodies: tuple[str, ...]
    scenery_alpha: float
    default_camera: str
    workspace_centre: tuple[float, float, float]
    workspace_half_extent: tuple[float, float, float]
    follows_robot: bool  # workspace (x, y) moves with the root body, for robots that travel
    length_scale: float  # metres; scales body sizes and camera shifts
    scenery_geom_types: tuple[int, ...] | None = None  # world geoms that count as scenery; None: all of them
    camera_relative: bool = False  # workspace in the camera's frame (see above) instead of the world's
    depth_behind: float = 0.0  # camera_relative: the box's depth behind the root body, as a fraction of its depth


METAWORLD_PROFILE = SuiteProfile(
    name="metaworld",
    scenery_bodies=("tablelink", "RetainingWall"),
    decor_bodies=("controller_box", "pedestal_feet", "torso", "pedestal", "right_arm_base_link"),
    scenery_alpha=0.0,
    default_camera="corner2",
    workspace_centre=(0.0, 0.65, 0.2),  # above the table, around the objects: bodies may briefly occlude
    workspace_half_extent=(0.4, 0.25, 0.15),
    follows_robot=False,
    length_scale=1.0,
)

LOCOMOTION_PROFILE = SuiteProfile(
    name="locomotion",
    scenery_bodies=(),
    decor_bodies=(),
    scenery_alpha=0.3,
    default_camera="track",
    workspace_centre=(0.0, 1.0, 0.9),  # behind the robot as the tracking camera sees it: no occlusion
    workspace_half_extent=(1.8, 0.5, 0.7),
    follows_robot=True,
    length_scale=3.0,
)


DMC_PROFILE = SuiteProfile(
    name="dmc",
    scenery_bodies=(),
    decor_bodies=(),
    scenery_alpha=0.3,  # the floor (its grid, the cue of forward motion) stays faintly visible, as locomotion's
    default_camera="",  # DMCEnv always names its camera (camera 0 of the domain)
    workspace_centre=(0.0, 0.1, 0.0),  # camera frame: around the view's centre, behind the robot
    workspace_half_extent=(1.4, 0.8, 0.3),  # view half-widths: bodies roam most of the image
    follows_robot=True,
    length_scale=2.4,  # replaced per model by 1.2 * model.stat.extent (walker 2.4 m, finger 0.8 m, cartpole 5 m)
    scenery_geom_types=(int(mujoco.mjtGeom.mjGEOM_PLANE),),  # floor, walls; not reacher's target or cartpole's rails
    camera_relative=True,
    depth_behind=0.3,
)


def suite_profile(model: mujoco.MjModel, suite: str | None = None) -> SuiteProfile:
    """The profile of ``suite`` ("dmc", given by the base env), else Meta-World's for a model with its table
    body ``tablelink``, else locomotion's. DMC's is scaled to the model's size (``model.stat.extent``)."""
    if suite == DMC_PROFILE.name:
        return dataclasses.replace(DMC_PROFILE, length_scale=1.2 * float(model.stat.extent))
    return METAWORLD_PROFILE if _body_id(model, "tablelink") >= 0 else LOCOMOTION_PROFILE


def _body_id(model: mujoco.MjModel, name: str) -> int:
    return mujoco.mj_name2id(model, _BODY, name)


def geoms_of_bodies(
    model: mujoco.MjModel, body_names: Sequence[str], world: bool, world_geom_types: Sequence[int] | None = None
) -> np.ndarray:
    """Boolean mask (ngeom,) of the geoms of the named bodies and, if ``world``, of the world body (only
    those of ``world_geom_types`` when given)."""
    body_ids = [i for i in (_body_id(model, name) for name in body_names) if i >= 0]
    mask = np.isin(model.geom_bodyid, body_ids)
    if world:
        of_world = model.geom_bodyid == 0
        if world_geom_types is not None:
            of_world &= np.isin(model.geom_type, world_geom_types)
        mask |= of_world
    return mask


# ---------------------------------------------------------------------------------------------------------
# Sampling helpers
# ---------------------------------------------------------------------------------------------------------


def sample_from_bands(rng: np.random.Generator, bands: Sequence[Band], size: int | None = None) -> np.ndarray:
    """Uniform samples from a union of disjoint intervals."""
    lows = np.array([band[0] for band in bands])
    widths = np.array([band[1] - band[0] for band in bands])
    which = rng.choice(len(bands), size=size, p=widths / widths.sum())
    return lows[which] + widths[which] * rng.random(size)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all channels in [0, 1]; shape (..., 3)."""
    h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def sample_colours(
    rng: np.random.Generator, hue_bands: Sequence[Band], n: int, saturation: Band = (0.55, 1.0)
) -> np.ndarray:
    """``n`` saturated RGB colours (n, 3) in [0, 1] whose hues lie in ``hue_bands``."""
    hue = sample_from_bands(rng, hue_bands, n)
    hsv = np.stack([hue, rng.uniform(*saturation, n), rng.uniform(0.5, 1.0, n)], axis=-1)
    return hsv_to_rgb(hsv)


def random_rotation(rng: np.random.Generator, angle_deg: Band) -> np.ndarray:
    """Rotation matrix (3, 3) about a uniformly random axis by an angle drawn from ``angle_deg``."""
    axis = rng.normal(size=3)
    return axis_angle_matrix(axis / np.linalg.norm(axis), np.deg2rad(rng.uniform(*angle_deg)))


def tilt_direction(direction: np.ndarray, towards: np.ndarray, angle: float) -> np.ndarray:
    """``direction`` rotated by exactly ``angle`` (radians) about the axis perpendicular to it and ``towards``."""
    axis = np.cross(direction, towards)
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # ``towards`` is parallel to ``direction``: any perpendicular axis will do
        axis = np.cross(direction, [1.0, 0.0, 0.0] if abs(direction[0]) < 0.9 else [0.0, 1.0, 0.0])
        norm = np.linalg.norm(axis)
    return axis_angle_matrix(axis / norm, angle) @ direction


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula for a unit ``axis``."""
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


# ---------------------------------------------------------------------------------------------------------
# Background: moving procedural patterns in place of RePo's natural videos
# ---------------------------------------------------------------------------------------------------------


class Waves:
    """Plane sinusoids drifting across the image (a train family)."""

    def __init__(self, rng: np.random.Generator, frequencies: np.ndarray):
        angle = rng.uniform(0.0, 2 * np.pi, len(frequencies))
        self.kx = 2 * np.pi * frequencies * np.cos(angle)
        self.ky = 2 * np.pi * frequencies * np.sin(angle)
        self.speed = rng.uniform(0.08, 0.25, len(frequencies)) * rng.choice([-1.0, 1.0], len(frequencies))
        self.phase = rng.uniform(0.0, 2 * np.pi, len(frequencies))

    def __call__(self, u: np.ndarray, v: np.ndarray, t: int) -> np.ndarray:
        waves = [
            np.sin(kx * u + ky * v + speed * t + phase)
            for kx, ky, speed, phase in zip(self.kx, self.ky, self.speed, self.phase)
        ]
        return 0.5 + 0.5 * np.mean(waves, axis=0)


class ScrollingNoise:
    """Smooth value noise on a periodic lattice, scrolling across the image (a train family)."""

    lattice_size = 16

    def __init__(self, rng: np.random.Generator, frequencies: np.ndarray):
        self.cells = 2.0 * frequencies  # value noise has about half a cycle per lattice cell
        self.lattices = rng.random((len(frequencies), self.lattice_size, self.lattice_size))
        self.velocity = rng.uniform(-0.08, 0.08, (len(frequencies), 2))  # lattice cells per step

    def __call__(self, u: np.ndarray, v: np.ndarray, t: int) -> np.ndarray:
        layers = [
            self._sample(lattice, u * cells + velocity[0] * t, v * cells + velocity[1] * t)
            for lattice, cells, velocity in zip(self.lattices, self.cells, self.velocity)
        ]
        return np.mean(layers, axis=0)

    def _sample(self, lattice: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear interpolation (smoothstep-eased) of the periodic lattice at (x, y)."""
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
        i0, j0 = x0.astype(int) % self.lattice_size, y0.astype(int) % self.lattice_size
        i1, j1 = (i0 + 1) % self.lattice_size, (j0 + 1) % self.lattice_size
        top = lattice[j0, i0] * (1 - fx) + lattice[j0, i1] * fx
        bottom = lattice[j1, i0] * (1 - fx) + lattice[j1, i1] * fx
        return top * (1 - fy) + bottom * fy


class Rings:
    """Concentric waves spreading from slowly wandering centres (a test family)."""

    def __init__(self, rng: np.random.Generator, frequencies: np.ndarray):
        n = len(frequencies)
        self.k = 2 * np.pi * frequencies
        self.speed = rng.uniform(0.1, 0.3, n)
        self.centre = rng.uniform(0.0, 1.0, (n, 2))
        self.wander = rng.uniform(0.01, 0.04, (n, 2))  # rad per step
        self.phase = rng.uniform(0.0, 2 * np.pi, (n, 2))

    def __call__(self, u: np.ndarray, v: np.ndarray, t: int) -> np.ndarray:
        rings = []
        for k, speed, centre, wander, phase in zip(self.k, self.speed, self.centre, self.wander, self.phase):
            cx, cy = centre + 0.3 * np.sin(wander * t + phase)
            rings.append(np.sin(k * np.hypot(u - cx, v - cy) - speed * t))
        return 0.5 + 0.5 * np.mean(rings, axis=0)


class Blobs:
    """Soft Gaussian blobs gliding on Lissajous paths (a test family)."""

    def __init__(self, rng: np.random.Generator, frequencies: np.ndarray):
        n = 2 * len(frequencies)
        self.sigma = 0.3 / np.repeat(frequencies, 2)
        self.weight = rng.uniform(0.6, 1.0, n)
        self.omega = rng.uniform(0.02, 0.08, (n, 2))  # rad per step
        self.phase = rng.uniform(0.0, 2 * np.pi, (n, 2))

    def __call__(self, u: np.ndarray, v: np.ndarray, t: int) -> np.ndarray:
        background = np.ones_like(u)
        for sigma, weight, omega, phase in zip(self.sigma, self.weight, self.omega, self.phase):
            cx, cy = 0.5 + 0.5 * np.sin(omega * t + phase)
            background *= 1.0 - weight * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * sigma**2))
        return 1.0 - background  # soft union of the blobs


PATTERN_FAMILIES = {"waves": Waves, "noise": ScrollingNoise, "rings": Rings, "blobs": Blobs}


def striped_palette(colours: np.ndarray, n_stripes: int) -> np.ndarray:
    """Lookup table (256, 3) uint8 cycling through ``colours`` in stripes, each shaded in brightness only.

    Scaling a colour keeps its hue, so every pattern pixel has a hue of the split's hue bands.
    """
    x = np.arange(256) / 256 * n_stripes
    stripe = np.floor(x)
    shade = 0.55 + 0.45 * np.sin(np.pi * (x - stripe))  # bright stripe centres, darker borders
    return np.rint(255 * colours[stripe.astype(int) % len(colours)] * shade[:, None]).astype(np.uint8)


class BackgroundVideo:
    """A moving procedural pattern that replaces the background, standing in for RePo's natural videos.

    A family-specific scalar field f(u, v, t) in [0, 1] over image coordinates is mapped through a
    striped palette; ``t`` is the env step counter, so the pattern changes every step.
    """

    def __init__(self, family: str, frequencies: np.ndarray, palette: np.ndarray, size: int, field):
        self.family = family
        self.frequencies = frequencies  # (layers,) cycles per image width
        self.palette = palette  # (256, 3) uint8
        self.field = field
        self.u, self.v = np.meshgrid(np.arange(size) / size, np.arange(size) / size)  # (H, W) each

    @classmethod
    def sample(cls, rng: np.random.Generator, spec: SplitSpec, size: int) -> BackgroundVideo:
        family = spec.background_families[rng.integers(len(spec.background_families))]
        frequencies = rng.uniform(*spec.spatial_frequency, 3)
        colours = sample_colours(rng, spec.hue_bands, int(rng.integers(3, 5)))
        palette = striped_palette(colours, n_stripes=len(colours))
        return cls(family, frequencies, palette, size, PATTERN_FAMILIES[family](rng, frequencies))

    def frame(self, t: int) -> np.ndarray:
        """The pattern at step ``t``: (size, size, 3) uint8."""
        index = (np.clip(self.field(self.u, self.v, t), 0.0, 0.999) * 256).astype(np.uint8)
        return self.palette[index]


def composite_background(
    frame: np.ndarray,
    pattern: np.ndarray,
    segmentation: np.ndarray,
    scenery_geoms: np.ndarray,
    scenery_alpha: float,
) -> np.ndarray:
    """Put ``pattern`` where ``segmentation`` (H, W, 2: objid, objtype) shows sky or scenery geoms.

    Sky pixels (no object) become the pattern; scenery pixels become ``scenery_alpha * frame +
    (1 - scenery_alpha) * pattern``; every other pixel (robot, task objects, sites, distractor bodies)
    keeps its rendered value exactly.
    """
    objid, objtype = segmentation[..., 0], segmentation[..., 1]
    sky = objtype == -1
    is_geom = objtype == _GEOM
    scenery = is_geom & scenery_geoms[np.where(is_geom, objid, 0)]
    weight = sky + (1.0 - scenery_alpha) * scenery  # (H, W): 1 = pattern, 0 = rendered frame
    blended = frame + weight[..., None] * (pattern.astype(np.float32) - frame)
    return np.rint(blended).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Texture, bodies, lighting, camera: per-episode edits of the render scene
# ---------------------------------------------------------------------------------------------------------


class GeomRecolouring:
    """Random colours and textures of scenery and decor geoms for one episode.

    Each target geom gets a colour of the split's hues and either no texture (flat colour) or one of the
    scenery's own grey textured materials, tinted by that colour (a grey texture keeps the colour's hue).
    Applied to the render scene's geoms.
    """

    def __init__(self, geom_ids: np.ndarray, rgba: np.ndarray, material_ids: np.ndarray):
        self.geom_ids = geom_ids
        self.rgba = rgba
        self.material_ids = material_ids
        self._index = {int(geom): i for i, geom in enumerate(geom_ids)}

    @classmethod
    def sample(
        cls, rng: np.random.Generator, spec: SplitSpec, geom_ids: np.ndarray, materials: np.ndarray
    ) -> GeomRecolouring:
        colours = sample_colours(rng, spec.hue_bands, len(geom_ids))
        rgba = np.concatenate([colours, np.ones((len(geom_ids), 1))], axis=1).astype(np.float32)
        choices = np.concatenate([[-1], materials]).astype(int)  # -1: flat colour, no material
        return cls(geom_ids, rgba, rng.choice(choices, len(geom_ids)))

    def apply(self, scene: mujoco.MjvScene) -> None:
        for i in range(scene.ngeom):
            geom = scene.geoms[i]
            k = self._index.get(geom.objid) if geom.objtype == _GEOM else None
            if k is not None:
                geom.rgba[:] = self.rgba[k]
                geom.matid = self.material_ids[k]


GREY_TEXEL_CHROMA = 4  # max - min of a texel's RGB (0-255) for the texel to count as grey


def textured_materials(model: mujoco.MjModel, geom_mask: np.ndarray) -> np.ndarray:
    """Ids of the materials with a grey RGB texture used by the geoms in ``geom_mask``.

    Only grey textures are kept: tinting a coloured one (Meta-World's wooden table) would move the tint's
    hue into the other split's bands.
    """
    used = np.unique(model.geom_matid[geom_mask])
    used = used[used >= 0]
    textures = model.mat_texid[used, _TEXROLE_RGB]
    return np.array([m for m, t in zip(used, textures) if t >= 0 and texture_is_grey(model, t)], dtype=int)


def texture_is_grey(model: mujoco.MjModel, texture_id: int) -> bool:
    """True when every texel of the texture has (nearly) equal red, green and blue."""
    start, channels = model.tex_adr[texture_id], model.tex_nchannel[texture_id]
    size = model.tex_height[texture_id] * model.tex_width[texture_id] * channels
    texels = model.tex_data[start : start + size].reshape(-1, channels)[:, :3]
    return int(np.ptp(texels, axis=1).max()) <= GREY_TEXEL_CHROMA


@dataclass
class MovingBody:
    """One visual-only geom on a smooth Lissajous path, spinning about a fixed axis."""

    shape: int
    size: np.ndarray  # (3,) mjvGeom size
    rgba: np.ndarray  # (4,) float32
    centre: np.ndarray  # (3,) relative to the workspace anchor
    amplitude: np.ndarray  # (3,)
    omega: np.ndarray  # (3,) rad per step
    phase: np.ndarray  # (3,)
    spin_axis: np.ndarray  # (3,) unit
    spin_rate: float  # rad per step

    def pose(
        self, t: int, anchor: np.ndarray, axes: np.ndarray | None = None, scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and flattened rotation matrix (9,) at step ``t``. The path is in the frame of
        ``axes`` (3, 3: its columns; None: the world's) in units of ``scale`` metres, around ``anchor``."""
        offset = self.centre + self.amplitude * np.sin(self.omega * t + self.phase)
        if axes is not None:
            offset = axes @ (scale * offset)
        return anchor + offset, axis_angle_matrix(self.spin_axis, self.spin_rate * t).ravel()


class DistractorBodies:
    """Moving distractor bodies: geoms appended to the render scene each frame, invisible to physics."""

    def __init__(self, bodies: list[MovingBody]):
        self.bodies = bodies

    @classmethod
    def sample(cls, rng: np.random.Generator, spec: SplitSpec, profile: SuiteProfile) -> DistractorBodies:
        half = np.array(profile.workspace_half_extent)
        n = int(rng.integers(2, 5))
        colours = sample_colours(rng, spec.hue_bands, n)
        bodies = []
        for colour in colours:
            axis = rng.normal(size=3)
            radius = rng.uniform(0.04, 0.08) * profile.length_scale
            bodies.append(
                MovingBody(
                    shape=int(rng.choice(spec.body_shapes)),
                    size=radius * rng.uniform(0.6, 1.6, 3),
                    rgba=np.append(colour, 1.0).astype(np.float32),
                    centre=np.array(profile.workspace_centre) + rng.uniform(-0.5, 0.5, 3) * half,
                    amplitude=rng.uniform(0.3, 0.5, 3) * half,
                    omega=rng.uniform(0.02, 0.08, 3),
                    phase=rng.uniform(0.0, 2 * np.pi, 3),
                    spin_axis=axis / np.linalg.norm(axis),
                    spin_rate=float(rng.uniform(0.02, 0.1)),
                )
            )
        return cls(bodies)

    def add_to(
        self, scene: mujoco.MjvScene, t: int, anchor: np.ndarray, axes: np.ndarray | None = None, scale: float = 1.0
    ) -> None:
        """Append the bodies to ``scene`` (after ``update_scene``), labelled as objects for segmentation;
        ``anchor``, ``axes`` and ``scale`` place their paths (`MovingBody.pose`)."""
        for body in self.bodies:
            if scene.ngeom >= scene.maxgeom:
                return
            geom = scene.geoms[scene.ngeom]
            position, rotation = body.pose(t, anchor, axes, scale)
            mujoco.mjv_initGeom(geom, body.shape, body.size, position, rotation, body.rgba)
            geom.category = int(mujoco.mjtCatBit.mjCAT_DECOR)
            geom.objtype = int(mujoco.mjtObj.mjOBJ_UNKNOWN)
            geom.objid = -1
            geom.segid = scene.ngeom  # unique id, so the segmentation render sees the body as an object
            scene.ngeom += 1


class LightingChange:
    """One episode's lighting: every light tinted and scaled, every directional light tilted.

    Each light's direction turns by exactly ``tilt`` radians, towards the episode's random vector ``towards``.
    """

    def __init__(self, gain: np.ndarray, tilt: float, towards: np.ndarray):
        self.gain = gain  # (3,) colour multiplier: tint * intensity
        self.tilt = tilt  # radians
        self.towards = towards  # (3,) unit

    @classmethod
    def sample(cls, rng: np.random.Generator, spec: SplitSpec) -> LightingChange:
        tint = sample_colours(rng, spec.hue_bands, 1, saturation=(0.15, 0.35))[0]
        tint = tint / tint.max()
        intensity = float(sample_from_bands(rng, spec.light_intensity))
        tilt = float(np.deg2rad(rng.uniform(*spec.light_tilt_deg)))
        towards = rng.normal(size=3)
        return cls(tint * intensity, tilt, towards / np.linalg.norm(towards))

    def apply(self, scene: mujoco.MjvScene) -> None:
        for i in range(scene.nlight):
            light = scene.lights[i]
            light.diffuse[:] = np.clip(light.diffuse * self.gain, 0.0, 1.0)
            light.ambient[:] = np.clip(light.ambient * self.gain, 0.0, 1.0)
            light.specular[:] = np.clip(light.specular * self.gain, 0.0, 1.0)
            if not light.headlight:
                light.dir[:] = tilt_direction(np.array(light.dir), self.towards, self.tilt)


class CameraJitter:
    """One episode's small camera displacement and rotation about the camera's own position."""

    def __init__(self, shift: np.ndarray, rotation: np.ndarray):
        self.shift = shift  # (3,) metres
        self.rotation = rotation  # (3, 3)

    @classmethod
    def sample(cls, rng: np.random.Generator, spec: SplitSpec, profile: SuiteProfile) -> CameraJitter:
        direction = rng.normal(size=3)
        distance = rng.uniform(*spec.camera_shift) * profile.length_scale
        shift = distance * direction / np.linalg.norm(direction)
        return cls(shift, random_rotation(rng, spec.camera_tilt_deg))

    def apply(self, scene: mujoco.MjvScene) -> None:
        for camera in scene.camera:  # the two eyes of the (mono or stereo) GL camera
            camera.pos[:] = camera.pos + self.shift
            camera.forward[:] = self.rotation @ camera.forward
            camera.up[:] = self.rotation @ camera.up


@dataclass
class EpisodeDistractors:
    """Everything drawn for one episode; a kind that is switched off is ``None``."""

    background: BackgroundVideo | None = None
    texture: GeomRecolouring | None = None
    bodies: DistractorBodies | None = None
    lighting: LightingChange | None = None
    camera: CameraJitter | None = None


# ---------------------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------------------


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Unknown distractor split {split!r}; expected one of {SPLITS}.")
    return split


def check_kinds(kinds: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validated kinds without duplicates; ``None`` means DEFAULT_KINDS, a bare string one kind."""
    if kinds is None:
        return DEFAULT_KINDS
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"Unknown distractor kind(s) {unknown}; expected a subset of {KINDS}.")
    return tuple(dict.fromkeys(kinds))


def split_rng(seed: int | None, split: str) -> np.random.Generator:
    """The split's own random stream: seeded by (seed, split), fresh OS entropy when ``seed`` is None."""
    entropy = np.random.SeedSequence(seed).entropy
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(SPLITS.index(split),)))


class DistractorWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Renders the base MuJoCo env with visual distractors of one split (RePo's distracted observations).

    Place it directly around the base env (Meta-World or gymnasium locomotion); ``render()`` returns the
    distracted RGB frame, uint8 (image_size, image_size, 3). Distractors are re-drawn at every reset from
    the wrapper's own generator, seeded by (seed, split); ``reset(seed=s)`` re-seeds it with (s, split).
    The pattern and the bodies move with a step counter, advanced by ``step()``. Each kind draws from
    its own stream, so switching one kind off leaves the others' draws unchanged.

    Args:
        env: the base env; ``env.unwrapped`` exposes ``model`` and ``data`` and, optionally, ``camera``
            (name or id) and ``image_size`` (int).
        split: ``"train"`` or ``"test"``; their parameter ranges are disjoint.
        kinds: any of KINDS; ``None`` means DEFAULT_KINDS (everything but ``camera``).
        seed: seed of the distractor stream; ``None`` draws fresh entropy.
        camera, image_size, shadows: override the base env's attributes (defaults: the suite's camera,
            64, True).
        scenery_alpha: override the suite's visibility of scenery under the pattern (0: fully replaced).
    """

    def __init__(
        self,
        env: gym.Env,
        split: str,
        kinds: Sequence[str] | None = None,
        seed: int | None = None,
        *,
        camera: str | int | None = None,
        image_size: int | None = None,
        shadows: bool | None = None,
        scenery_alpha: float | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            split=split,
            kinds=kinds,
            seed=seed,
            camera=camera,
            image_size=image_size,
            shadows=shadows,
            scenery_alpha=scenery_alpha,
        )
        super().__init__(env)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}  # the only mode rendered here
        self.split = check_split(split)
        self.kinds = check_kinds(kinds)
        base = env.unwrapped
        self._model: mujoco.MjModel = base.model
        self._data: mujoco.MjData = base.data
        self.profile = suite_profile(self._model, getattr(base, "suite", None))
        self.camera = camera if camera is not None else self._base_camera(base)
        self.image_size = int(image_size or getattr(base, "image_size", None) or DEFAULT_IMAGE_SIZE)
        self.shadows = bool(getattr(base, "shadows", True) if shadows is None else shadows)
        self.scenery_alpha = self.profile.scenery_alpha if scenery_alpha is None else float(scenery_alpha)
        self.scenery_geoms = geoms_of_bodies(
            self._model, self.profile.scenery_bodies, world=True, world_geom_types=self.profile.scenery_geom_types
        )
        decor = geoms_of_bodies(self._model, self.profile.decor_bodies, world=False)
        self.texture_geoms = np.flatnonzero(self.scenery_geoms | decor)
        self._materials = textured_materials(self._model, self.scenery_geoms)
        self._rng = split_rng(seed, split)
        self._renderer: mujoco.Renderer | None = None
        self.episode: EpisodeDistractors | None = None
        self.elapsed_steps = 0

    def _base_camera(self, base: gym.Env) -> str | int:
        """The base env's ``camera`` (or ``camera_name``), else the suite's default camera, else free."""
        for attribute in ("camera", "camera_name"):
            if getattr(base, attribute, None) is not None:
                return getattr(base, attribute)
        has_default = mujoco.mj_name2id(self._model, _CAMERA, self.profile.default_camera) >= 0
        return self.profile.default_camera if has_default else -1

    @property
    def render_mode(self) -> str:
        return "rgb_array"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = split_rng(seed, self.split)
        self.episode = self.sample_episode()
        self.elapsed_steps = 0
        return observation, info

    def step(self, action):
        result = self.env.step(action)
        self.elapsed_steps += 1
        return result

    def sample_episode(self) -> EpisodeDistractors:
        """Draw the next episode's distractors from the split's stream, each kind from its own substream."""
        episode_seed = int(self._rng.integers(2**63))
        spec, profile = SPLIT_SPECS[self.split], self.profile
        samplers = {
            "background": lambda rng: BackgroundVideo.sample(rng, spec, self.image_size),
            "texture": lambda rng: GeomRecolouring.sample(rng, spec, self.texture_geoms, self._materials),
            "bodies": lambda rng: DistractorBodies.sample(rng, spec, profile),
            "lighting": lambda rng: LightingChange.sample(rng, spec),
            "camera": lambda rng: CameraJitter.sample(rng, spec, profile),
        }
        drawn = {}
        for kind in self.kinds:
            drawn[kind] = samplers[kind](np.random.default_rng([episode_seed, KINDS.index(kind)]))
        return EpisodeDistractors(**drawn)

    def render(self) -> np.ndarray:
        """The distracted RGB frame of the current state, uint8 (image_size, image_size, 3)."""
        if self.episode is None:
            self.episode = self.sample_episode()
        renderer = self._get_renderer()
        renderer.update_scene(self._data, camera=self.camera)
        self._edit_scene(renderer.scene)
        frame = renderer.render()
        if self.episode.background is None:
            return frame
        renderer.enable_segmentation_rendering()
        segmentation = renderer.render()  # (H, W, 2): objid, objtype; same scene, one cheap flat pass
        renderer.disable_segmentation_rendering()
        pattern = self.episode.background.frame(self.elapsed_steps)
        return composite_background(frame, pattern, segmentation, self.scenery_geoms, self.scenery_alpha)

    def _edit_scene(self, scene: mujoco.MjvScene) -> None:
        episode = self.episode
        if episode.texture is not None:
            episode.texture.apply(scene)
        if episode.lighting is not None:
            episode.lighting.apply(scene)
        if episode.camera is not None:
            episode.camera.apply(scene)
        if episode.bodies is not None:
            if self.profile.camera_relative:
                episode.bodies.add_to(scene, self.elapsed_steps, *self._camera_workspace(scene))
            else:
                episode.bodies.add_to(scene, self.elapsed_steps, self._workspace_anchor())

    def _camera_workspace(self, scene: mujoco.MjvScene) -> tuple[np.ndarray, np.ndarray, float]:
        """Anchor (3,), axes (3, 3: right, up, forward columns) and scale (half the view's width, metres) of
        the camera-relative workspace: on the camera's axis, ``depth_behind`` further than the root body,
        or nearer than it when that point would lie under the floor (the lowest scenery geom)."""
        camera = scene.camera[0]  # before any camera jitter: the bodies do not move with it
        position, forward, up = np.array(camera.pos), np.array(camera.forward), np.array(camera.up)
        target = self._data.xpos[1] if self._model.nbody > 1 else self._model.stat.center
        depth = max(float(forward @ (target - position)), 1e-3)
        anchor = position + forward * depth * (1.0 + self.profile.depth_behind)
        floor = self._data.geom_xpos[self.scenery_geoms, 2].min() if self.scenery_geoms.any() else -np.inf
        if anchor[2] < floor:  # a top-down view: the floor would hide them, so fly between camera and robot
            anchor = position + forward * depth * (1.0 - self.profile.depth_behind)
        depth_of_anchor = float(forward @ (anchor - position))
        scale = depth_of_anchor * camera.frustum_top / camera.frustum_near  # tan(fovy / 2) * depth
        return anchor, np.column_stack([np.cross(forward, up), up, forward]), scale

    def _workspace_anchor(self) -> np.ndarray:
        """Origin of the distractor bodies' workspace: the root body's (x, y) for travelling robots."""
        if not self.profile.follows_robot or self._model.nbody < 2:
            return np.zeros(3)
        x, y, _ = self._data.xpos[1]
        return np.array([x, y, 0.0])

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = open_renderer(self._model, self.image_size, self.image_size, self.shadows)
        return self._renderer

    def close(self) -> None:
        self._close_renderer()
        super().close()

    def __del__(self):
        with contextlib.suppress(Exception):  # at interpreter exit the GL display may already be gone
            self._close_renderer()

    def _close_renderer(self) -> None:
        """Close the renderer with its own GL context current, so other renderers survive (mujoco#1186)."""
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            close_renderer(renderer)
