"""Visual distractors for RePo (embodied_rl.envs.distractors): tiny renders (32 px), a few frames each."""

import gymnasium as gym
import metaworld
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodied_rl.envs.distractors import (
    KINDS,
    SPLIT_SPECS,
    DistractorWrapper,
    GeomRecolouring,
    LightingChange,
    textured_materials,
)

SIZE = 32


def metaworld_env(task: str = "reach-v3", seed: int = 0) -> gym.Env:
    """A raw, seeded Meta-World env with its task randomisation on (Meta-World's reset ignores ``seed``)."""
    env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[task]()
    env._set_task_called = True
    env._partially_observable = False
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.seed(seed)
    return env


def hopper_env(seed: int = 0) -> gym.Env:
    """A raw Hopper whose own generator is seeded, so plain ``reset()`` gives a fixed initial state."""
    env = gym.make("Hopper-v5").unwrapped
    env.reset(seed=seed)
    return env


BASE_ENVS = {"metaworld": metaworld_env, "hopper": hopper_env}


def plain_render_and_segmentation(wrapper: DistractorWrapper) -> tuple[np.ndarray, np.ndarray]:
    """An undistracted render and its segmentation from an independent renderer at the same camera."""
    with mujoco.Renderer(wrapper.unwrapped.model, SIZE, SIZE) as renderer:
        renderer.update_scene(wrapper.unwrapped.data, camera=wrapper.camera)
        frame = renderer.render()
        renderer.enable_segmentation_rendering()
        segmentation = renderer.render()
    return frame, segmentation


def hue_bins(rgb: np.ndarray, n_bins: int = 12) -> set[int]:
    """The twelfths of the colour wheel that the hues of ``rgb`` (..., 3; any scale) fall in."""
    rgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    top, bottom = rgb.max(axis=1), rgb.min(axis=1)
    chroma = np.where(top > bottom, top - bottom, 1.0)
    r, g, b = rgb.T
    hue = np.select([top == r, top == g], [((g - b) / chroma) % 6, (b - r) / chroma + 2], (r - g) / chroma + 4)
    return set(np.floor(hue / 6 * n_bins).astype(int)[top > bottom].tolist())


def episode_colours(wrapper: DistractorWrapper) -> np.ndarray:
    """Every colour drawn for the current episode: background palette, textures, bodies, light tint."""
    episode = wrapper.episode
    return np.concatenate(
        [
            episode.background.palette / 255.0,
            episode.texture.rgba[:, :3],
            np.array([body.rgba[:3] for body in episode.bodies.bodies]),
            episode.lighting.gain[None],
        ]
    )


def test_background_moves_every_step():
    wrapper = DistractorWrapper(hopper_env(), "train", ["background"], seed=0, image_size=SIZE)
    wrapper.reset(seed=0)
    first = wrapper.render()
    assert np.array_equal(first, wrapper.render()), "a frame depends only on the state and the step"
    wrapper.step(np.zeros(wrapper.action_space.shape))
    _, segmentation = plain_render_and_segmentation(wrapper)
    sky = segmentation[..., 1] == -1
    assert sky.any()
    assert not np.array_equal(first[sky], wrapper.render()[sky])


@pytest.mark.parametrize("suite", ["metaworld", "hopper"])
def test_background_keeps_robot_and_object_pixels(suite):
    env = BASE_ENVS[suite]()
    wrapper = DistractorWrapper(env, "train", ["background"], seed=0, image_size=SIZE)
    wrapper.reset(seed=0)
    frame = wrapper.render()
    plain, segmentation = plain_render_and_segmentation(wrapper)
    assert np.array_equal(DistractorWrapper(env, "train", [], image_size=SIZE).render(), plain)

    objid, objtype = segmentation[..., 0], segmentation[..., 1]
    is_geom = objtype == mujoco.mjtObj.mjOBJ_GEOM
    background = (objtype == -1) | (is_geom & wrapper.scenery_geoms[np.where(is_geom, objid, 0)])
    assert 0 < background.sum() < background.size
    assert np.array_equal(frame[~background], plain[~background])  # robot, task objects, sites untouched
    assert (frame[background] != plain[background]).any(axis=-1).mean() > 0.5


def test_train_and_test_splits_never_share_colours_or_patterns():
    draws = {}
    for split in ("train", "test"):
        wrapper = DistractorWrapper(hopper_env(), split, KINDS, seed=123, image_size=SIZE)
        episodes, colours = [], []
        for _ in range(100):
            wrapper.reset()
            episodes.append(wrapper.episode)
            colours.append(episode_colours(wrapper))
        draws[split] = {
            "hue_bins": hue_bins(np.concatenate(colours)),
            "families": {episode.background.family for episode in episodes},
            "frequencies": np.concatenate([episode.background.frequencies for episode in episodes]),
            "shapes": {body.shape for episode in episodes for body in episode.bodies.bodies},
            "light_gain": np.array([episode.lighting.gain.max() for episode in episodes]),
            "light_tilt": np.array([episode.lighting.tilt for episode in episodes]),
            "camera_tilt": np.array([np.trace(episode.camera.rotation) for episode in episodes]),
            "camera_shift": np.array([np.linalg.norm(episode.camera.shift) for episode in episodes]),
        }
    train, test = draws["train"], draws["test"]

    assert train["hue_bins"].isdisjoint(test["hue_bins"]) and len(train["hue_bins"]) == 6
    assert train["families"].isdisjoint(test["families"])
    assert train["frequencies"].max() < test["frequencies"].min()
    assert train["shapes"].isdisjoint(test["shapes"])
    train_gain = SPLIT_SPECS["train"].light_intensity[0]
    assert ((train["light_gain"] >= train_gain[0]) & (train["light_gain"] <= train_gain[1])).all()
    assert ((test["light_gain"] < train_gain[0]) | (test["light_gain"] > train_gain[1])).all()
    assert train["light_tilt"].max() < test["light_tilt"].min()
    assert train["camera_tilt"].min() > test["camera_tilt"].max()
    assert train["camera_shift"].max() < test["camera_shift"].min()


def scene_light_directions(model: mujoco.MjModel, data: mujoco.MjData) -> tuple[mujoco.MjvScene, np.ndarray]:
    """A render scene of ``model`` (no GL needed) and the directions of its non-head lights, (n, 3)."""
    scene = mujoco.MjvScene(model, maxgeom=1000)
    camera = mujoco.MjvCamera()
    mujoco.mjv_updateScene(model, data, mujoco.MjvOption(), None, camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
    lights = [scene.lights[i] for i in range(scene.nlight) if not scene.lights[i].headlight]
    return scene, np.array([light.dir for light in lights], dtype=np.float64)


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_light_turns_by_exactly_the_drawn_tilt(split):
    env = metaworld_env()  # three directional lights, pointing different ways
    env.reset()
    spec, rng = SPLIT_SPECS[split], np.random.default_rng(0)
    low, high = spec.light_tilt_deg
    for _ in range(50):
        scene, before = scene_light_directions(env.model, env.data)
        change = LightingChange.sample(rng, spec)
        change.apply(scene)
        after = np.array([scene.lights[i].dir for i in range(scene.nlight) if not scene.lights[i].headlight])
        cosine = np.sum(before * after, axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
        angles = np.rad2deg(np.arccos(np.clip(cosine, -1.0, 1.0)))
        assert len(angles) == 3
        np.testing.assert_allclose(angles, np.rad2deg(change.tilt), atol=0.01)
        assert ((angles > low - 0.01) & (angles < high + 0.01)).all()


def test_only_grey_textures_are_tinted_so_tints_keep_their_hue():
    model = metaworld_env().model
    wrapper = DistractorWrapper(metaworld_env(), "train", ["texture"])
    names = {model.material(int(i)).name for i in textured_materials(model, wrapper.scenery_geoms)}
    assert names == {"basic_floor", "wall_metal"}  # not the brown "table_wood"
    texels = []
    for material in wrapper._materials:
        texture = model.mat_texid[material, mujoco.mjtTextureRole.mjTEXROLE_RGB]
        start, size = model.tex_adr[texture], model.tex_height[texture] * model.tex_width[texture] * 3
        texels.append(np.unique(model.tex_data[start : start + size].reshape(-1, 3), axis=0))
    texels = np.concatenate(texels).astype(np.float64) / 255
    texels = texels[texels.max(axis=1) > 0.1]
    recolouring = GeomRecolouring.sample(np.random.default_rng(0), SPLIT_SPECS["train"], np.arange(200), np.array([]))
    tinted = texels[None] * recolouring.rgba[:, None, :3]  # every tint times every texel colour
    assert all(b % 2 == 0 for b in hue_bins(tinted))


def test_rendered_background_hues_follow_the_split():
    bins = {}
    for split in ("train", "test"):
        wrapper = DistractorWrapper(hopper_env(), split, ["background"], seed=7, image_size=SIZE)
        wrapper.reset(seed=7)
        frame = wrapper.render()
        _, segmentation = plain_render_and_segmentation(wrapper)
        bins[split] = hue_bins(frame[segmentation[..., 1] == -1])  # sky pixels: all pattern
    assert bins["train"] and bins["test"] and bins["train"].isdisjoint(bins["test"])
    assert all(b % 2 == 0 for b in bins["train"]) and all(b % 2 == 1 for b in bins["test"])


def test_reproducible_for_a_fixed_seed():
    def frames(seed: int, reset_seed: int | None = None) -> list[np.ndarray]:
        wrapper = DistractorWrapper(hopper_env(), "test", KINDS, seed=seed, image_size=SIZE)
        wrapper.reset(seed=reset_seed)
        shots = [wrapper.render()]
        wrapper.step(np.full(wrapper.action_space.shape, 0.5))
        return shots + [wrapper.render()]

    assert all(np.array_equal(a, b) for a, b in zip(frames(3), frames(3)))
    assert not np.array_equal(frames(3)[0], frames(4)[0])
    assert np.array_equal(frames(3, reset_seed=9)[0], frames(4, reset_seed=9)[0]), "reset(seed) re-seeds"

    # each kind draws from its own stream: switching the others off leaves the background unchanged
    alone = DistractorWrapper(hopper_env(), "train", ["background"], seed=5)
    together = DistractorWrapper(hopper_env(), "train", KINDS, seed=5)
    alone.reset(), together.reset()
    assert np.array_equal(alone.episode.background.palette, together.episode.background.palette)


def test_distractors_never_touch_physics_or_the_model():
    plain, distracted = metaworld_env(), metaworld_env()
    wrapper = DistractorWrapper(distracted, "train", KINDS, seed=0, image_size=SIZE)
    names = ("geom_rgba", "geom_matid", "light_diffuse", "light_dir", "cam_pos", "cam_quat")
    visual = {name: getattr(distracted.model, name).copy() for name in names}
    plain.reset()
    wrapper.reset()
    rng = np.random.default_rng(0)
    for _ in range(3):
        action = rng.uniform(-1, 1, plain.action_space.shape)
        plain.step(action)
        wrapper.step(action)
        wrapper.render()
    np.testing.assert_array_equal(plain.data.qpos, distracted.data.qpos)
    np.testing.assert_array_equal(plain.data.qvel, distracted.data.qvel)
    for name, before in visual.items():
        np.testing.assert_array_equal(getattr(distracted.model, name), before)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_alone_changes_the_frame(kind):
    env = hopper_env()
    wrapper = DistractorWrapper(env, "test", [kind], seed=1, image_size=SIZE)
    wrapper.reset(seed=1)
    frame = wrapper.render()
    assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
    assert not np.array_equal(frame, plain_render_and_segmentation(wrapper)[0])


def test_switching_a_kind_off_leaves_the_draws_of_the_others_unchanged():
    everything = DistractorWrapper(hopper_env(), "train", KINDS, seed=3)
    lighting_only = DistractorWrapper(hopper_env(), "train", ["lighting"], seed=3)
    for _ in range(2):  # two episodes
        everything.reset(), lighting_only.reset()
        drawn, alone = everything.episode.lighting, lighting_only.episode.lighting
        assert np.array_equal(drawn.gain, alone.gain) and drawn.tilt == alone.tilt
        assert lighting_only.episode.background is None


def test_distractor_bodies_stay_around_a_travelling_robot():
    env = hopper_env()
    wrapper = DistractorWrapper(env, "train", ["bodies"], seed=0, image_size=SIZE)
    wrapper.reset(seed=0)
    env.data.qpos[0] += 20.0  # the hopper far down its track: the tracking camera follows it
    mujoco.mj_forward(env.model, env.data)
    changed = (wrapper.render() != plain_render_and_segmentation(wrapper)[0]).any(axis=-1)
    assert changed.mean() > 0.01, "the bodies were left behind, out of view"


def test_renderer_is_opened_with_the_env_shadows_and_a_big_enough_framebuffer(monkeypatch):
    import embodied_rl.envs.distractors as distractors

    opened = []
    real_open_renderer = distractors.open_renderer

    def recording_open_renderer(model, height, width, shadows=True):
        opened.append((height, width, shadows))
        return real_open_renderer(model, height, width, shadows)

    monkeypatch.setattr(distractors, "open_renderer", recording_open_renderer)
    env = hopper_env()
    env.shadows = False
    wrapper = DistractorWrapper(env, "train", ["lighting"], seed=0, image_size=481)  # > the 480 px default
    wrapper.reset(seed=0)
    assert wrapper.render().shape == (481, 481, 3)
    assert opened == [(481, 481, False)]
    wrapper.close()


def test_size_and_camera_come_from_the_base_env():
    env = hopper_env()
    env.image_size, env.camera = 24, -1
    wrapper = DistractorWrapper(env, "train", seed=0)
    wrapper.reset(seed=0)
    frame = wrapper.render()
    assert frame.shape == (24, 24, 3) and frame.dtype == np.uint8 and wrapper.camera == -1
    assert DistractorWrapper(metaworld_env(), "train").camera == "corner2"  # no attributes: suite default
    wrapper.close()


def test_unknown_split_or_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="split 'validation'"):
        DistractorWrapper(hopper_env(), "validation")
    with pytest.raises(ValueError, match=r"kind\(s\) \['clouds'\]"):
        DistractorWrapper(hopper_env(), "train", ["background", "clouds"])
    assert DistractorWrapper(hopper_env(), "train", "bodies").kinds == ("bodies",)


def test_closing_one_wrapper_leaves_another_rendering():
    """Closing a renderer while another's GL context is current must not delete that one's framebuffers."""
    env = hopper_env()
    first = DistractorWrapper(env, "train", seed=0, image_size=SIZE)
    second = DistractorWrapper(env, "train", seed=0, image_size=SIZE)
    first.reset(), second.reset()
    first.render()
    expected = second.render()  # second's GL context is now the current one
    first.close()
    assert np.array_equal(second.render(), expected)


@pytest.mark.filterwarnings("ignore:.*(different from the unwrapped|observation space m).*")
def test_passes_the_gymnasium_env_checker():
    check_env(DistractorWrapper(hopper_env(), "train", seed=0, image_size=SIZE))
