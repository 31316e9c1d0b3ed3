"""Text2Reward (Xie et al., ICLR 2024): dense reward code written by an LLM from a task description, checked,
sandboxed, trained on and refined. Modules: `abstraction` (the Pythonic description of an environment family that
the prompt shows, and the attributes generated code may read), `snapshot` (those attributes read from a live env
each step, as plain data), `checker` (static checks of a program before it runs), `prompts` and `generation` (asking
the LLM, extracting the function, retries with the checker's messages), `sandbox` (running accepted code in
resource-limited worker processes)."""

from embodied_rl.rewards.text2reward.abstraction import Abstraction, AttributeSpec, abstraction_for, supported_tasks
from embodied_rl.rewards.text2reward.checker import CheckedProgram, ProgramRejected, check_program
from embodied_rl.rewards.text2reward.generation import (
    Candidate,
    GenerationSettings,
    extract_program,
    generate_candidates,
    smoke_test,
)
from embodied_rl.rewards.text2reward.sandbox import CandidateFailed, RewardSandbox, SandboxLimits
from embodied_rl.rewards.text2reward.snapshot import (
    ReadOnlySnapshot,
    SnapshotInfo,
    snapshots_from_info,
    take_snapshot,
    take_snapshots,
)

__all__ = [
    "Abstraction",
    "AttributeSpec",
    "Candidate",
    "CandidateFailed",
    "CheckedProgram",
    "GenerationSettings",
    "ProgramRejected",
    "ReadOnlySnapshot",
    "RewardSandbox",
    "SandboxLimits",
    "SnapshotInfo",
    "abstraction_for",
    "check_program",
    "extract_program",
    "generate_candidates",
    "smoke_test",
    "snapshots_from_info",
    "supported_tasks",
    "take_snapshot",
    "take_snapshots",
]
