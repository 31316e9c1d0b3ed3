"""Shared pytest setup: the headless MuJoCo backend chosen before anything imports mujoco (a MUJOCO_GL you set
wins, else EGL with an NVIDIA GPU, else OSMesa: `embodied_rl.envs.rendering.choose_backend`), and the tiny offline
dataset that the training tests share."""

import pytest

import embodied_rl.envs  # noqa: F401  (importing it sets MUJOCO_GL)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Six 30-step episodes of the noisy scripted expert on reach-v3, with reference returns, in a Minari folder of
    their own (MINARI_DATASETS_PATH points there while a test module uses it)."""
    from embodied_rl.data import collect_dataset, dataset_id_for
    from embodied_rl.envs import make_env
    from embodied_rl.pipelines.offline_datasets import make_behaviour_policy

    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        env = make_env(task="metaworld/reach-v3", time_limit=30)
        policy = make_behaviour_policy("scripted", env, "metaworld/reach-v3", noise_std=0.5, seed=0)
        collect_dataset(
            env,
            policy,
            dataset_id_for("metaworld/reach-v3", "tiny"),
            episodes=6,
            progress=False,
            metadata={"ref_min_score": 0.0, "ref_max_score": 300.0},
        )
        env.close()
        yield root
