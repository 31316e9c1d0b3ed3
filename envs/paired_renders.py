"""Paired renders for RePo's calibration: every state seen with the target distractors and with source ones.

RePo's test-time adaptation (Zhu et al., NeurIPS 2023) calibrates the encoder on paired observations: the
same state rendered with the distractors the agent was trained on (source) and with the shifted ones it is
adapted to (target). `PairedRenders` wraps an env built with distractors (a `DistractorWrapper` anywhere
in its wrapper chain, the target) and renders each state a second time with a second distractor stream of
its own on the same ``MjModel`` / ``MjData``: ``info["paired_pixels"]`` after every reset and step. The
second render shares the target's camera, image size, shadows and distractor step counter; it never touches
physics, the observation, or the target's own draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from .distractors import DistractorWrapper, split_rng

PAIRED_KEY = "paired_pixels"


def find_distractor_wrapper(env: gym.Env) -> DistractorWrapper:
    """The outermost `DistractorWrapper` of ``env``'s wrapper chain; a ValueError when there is none."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, DistractorWrapper):
            return layer
        layer = layer.env
    raise ValueError(
        "PairedRenders needs an env with distractors (a DistractorWrapper in its wrapper chain, e.g. "
        "make_env(task, distractors='test'))"
    )


class PairedRenders(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``info["paired_pixels"]``: the current state rendered with source distractors, uint8 (H, W, 3).

    The target frame of the same state is the env's own distracted render (its pixel observation, or
    ``render()``). Put it outermost, e.g. ``make_env(task, obs_mode="pixels", distractors="test",
    wrappers=[PairedRenders])``; with action repeat or frame stacking, the paired frame is that of the
    last state only (one frame, not a stack).

    Args:
        env: an env with a `DistractorWrapper` (the target distractors) in its chain.
        source_split: ``"train"`` or ``"test"`` for the source distractors, ``None`` for none (plain renders).
        kinds: the source distractor kinds; ``None``: the target's kinds.
        seed: seed of the source stream, drawn by (seed, source_split); ``reset(seed=s)`` re-seeds it with
            (s, source_split), as `DistractorWrapper` does. With ``source_split`` equal to the target's split
            and the same seed, the paired frame equals the target frame.
    """

    def __init__(
        self,
        env: gym.Env,
        source_split: str | None = "train",
        kinds: Sequence[str] | None = None,
        seed: int | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(self, source_split=source_split, kinds=kinds, seed=seed)
        super().__init__(env)
        self.target = find_distractor_wrapper(env)
        kinds = self.target.kinds if kinds is None else kinds
        self.source_split = source_split
        # A second distractor renderer on the same base env: it is never stepped or reset through the chain,
        # only asked to render; its episodes and step counter are driven from here.
        self.source = DistractorWrapper(
            self.target.env,
            source_split or "train",
            kinds if source_split is not None else (),
            seed,
            camera=self.target.camera,
            image_size=self.target.image_size,
            shadows=self.target.shadows,
            scenery_alpha=self.target.scenery_alpha,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.source._rng = split_rng(seed, self.source.split)  # as DistractorWrapper.reset re-seeds
        self.source.episode = self.source.sample_episode()
        return observation, self._with_paired(info)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, self._with_paired(info)

    def paired_render(self) -> np.ndarray:
        """The current state with the source distractors, at the target's distractor step."""
        self.source.elapsed_steps = self.target.elapsed_steps
        return self.source.render()

    def _with_paired(self, info: dict) -> dict:
        return {**info, PAIRED_KEY: self.paired_render()}

    def close(self) -> None:
        self.source._close_renderer()  # its own renderer only; the base env is closed through the chain
        super().close()
