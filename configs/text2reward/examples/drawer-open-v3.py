# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: drawer-open-v3
import numpy as np


def compute_dense_reward(obs, action):
    hand_to_handle = np.linalg.norm(obs.ee_position - obs.object_position)
    handle_to_open = np.linalg.norm(obs.object_position - obs.goal_position)
    reach = 1.0 - np.tanh(10.0 * hand_to_handle)
    # pulling counts only while the hand is at the handle
    pull = (1.0 - np.tanh(5.0 * handle_to_open)) if hand_to_handle < 0.05 else 0.0
    opened = 5.0 if handle_to_open < 0.03 else 0.0
    return float(reach + 2.0 * pull + opened - 0.01 * np.sum(np.square(action[:3])))
