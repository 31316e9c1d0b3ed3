# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: button-press-topdown-v3
import numpy as np


def compute_dense_reward(obs, action):
    above = obs.object_position + np.array([0.0, 0.0, 0.05])
    # come down onto the button from above, then push its top towards the pressed height
    xy_gap = np.linalg.norm(obs.ee_position[:2] - obs.object_position[:2])
    approach = 1.0 - np.tanh(10.0 * np.linalg.norm(obs.ee_position - above))
    depth = abs(obs.object_position[2] - obs.goal_position[2])
    press = (1.0 - np.tanh(50.0 * depth)) if xy_gap < 0.02 else 0.0
    pressed = 5.0 if depth < 0.005 else 0.0
    return float(approach + 2.0 * press + pressed)
