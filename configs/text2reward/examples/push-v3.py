# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: push-v3
import numpy as np


def compute_dense_reward(obs, action):
    hand_to_block = np.linalg.norm(obs.ee_position - obs.object_position)
    block_to_goal = np.linalg.norm(obs.object_position[:2] - obs.goal_position[:2])
    # first get the hand to the block, then reward moving the block while the hand stays at it
    approach = 1.0 - np.tanh(10.0 * hand_to_block)
    near_block = hand_to_block < 0.05
    progress = (1.0 - np.tanh(5.0 * block_to_goal)) if near_block else 0.0
    success = 5.0 if block_to_goal < 0.05 else 0.0
    effort = 0.01 * np.sum(np.square(action[:3]))
    return float(approach + 2.0 * progress + success - effort)
