# Hand-written by embodied_rl's developers as a few-shot example for Text2Reward prompts; not model output.
# It reads only attributes of its task's abstraction (embodied_rl.rewards.text2reward.abstraction).
# task: pick-place-v3
import numpy as np


def compute_dense_reward(obs, action):
    hand_to_block = np.linalg.norm(obs.ee_position - obs.object_position)
    block_to_goal = np.linalg.norm(obs.object_position - obs.goal_position)
    reward = 1.0 - np.tanh(10.0 * hand_to_block)  # stage 1: reach the block
    holding = hand_to_block < 0.03 and obs.gripper_openness < 0.6
    if holding:
        reward += 1.0  # stage 2: grasp it
        lifted = obs.object_position[2] > 0.04
        if lifted:
            reward += 1.0 + 2.0 * (1.0 - np.tanh(5.0 * block_to_goal))  # stage 3: carry it to the target
    if block_to_goal < 0.05:
        reward += 5.0
    reward -= 0.01 * np.sum(np.square(action[:3]))
    return float(reward)
