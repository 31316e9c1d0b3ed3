# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: reach-v3
import numpy as np


def compute_dense_reward(obs, action):
    fingertips = obs.ee_position - np.array([0.0, 0.0, 0.045])
    distance = np.linalg.norm(fingertips - obs.goal_position)
    closeness = 1.0 - np.tanh(10.0 * distance)
    arrived = 2.0 if distance < 0.05 else 0.0
    effort = 0.01 * np.sum(np.square(action[:3]))
    return float(closeness + arrived - effort)
