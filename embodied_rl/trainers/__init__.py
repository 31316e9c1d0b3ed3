"""Training loops on one skeleton (`base.Trainer`), run assembly (`assembly.Run`), evaluation and checkpoints."""

from embodied_rl.trainers.assembly import Run
from embodied_rl.trainers.base import Trainer, TrainerConfig
from embodied_rl.trainers.checkpoint import load_checkpoint, save_checkpoint
from embodied_rl.trainers.evaluation import AgentPolicy, evaluate_policy, normalized_score
from embodied_rl.trainers.loading import find_run, load_agent, load_run_config
from embodied_rl.trainers.offline import OfflineTrainer, OfflineTrainerConfig
from embodied_rl.trainers.online import OnlineTrainer, OnlineTrainerConfig

__all__ = [
    "AgentPolicy",
    "OfflineTrainer",
    "OfflineTrainerConfig",
    "OnlineTrainer",
    "OnlineTrainerConfig",
    "Run",
    "Trainer",
    "TrainerConfig",
    "evaluate_policy",
    "find_run",
    "load_agent",
    "load_checkpoint",
    "load_run_config",
    "normalized_score",
    "save_checkpoint",
]
