# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: door-open-v3
import numpy as np


def compute_dense_reward(obs, action):
    hand_to_handle = np.linalg.norm(obs.ee_position - obs.object_position)
    handle_to_open = np.linalg.norm(obs.object_position[:2] - obs.goal_position[:2])
    reach = 1.0 - np.tanh(10.0 * hand_to_handle)
    # a closed gripper near the handle holds it; swinging the door counts from then on
    gripping = hand_to_handle < 0.05 and obs.gripper_openness < 0.5
    swing = (1.0 - np.tanh(4.0 * handle_to_open)) if gripping else 0.0
    opened = 5.0 if handle_to_open < 0.08 else 0.0
    return float(reach + 3.0 * swing + opened - 0.01 * np.sum(np.square(action)))
