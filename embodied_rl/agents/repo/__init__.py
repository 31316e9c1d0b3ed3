"""RePo (Zhu et al., NeurIPS 2023): an RSSM world model trained on reward prediction under a KL constraint held by a
dual variable, no reconstruction, and a Dreamer-v1 actor-critic in its imagination; `objective="dreamer"` gives the
Dreamer-v1 baseline from the same code. See `agent.py` for the interface, defaults and deviations."""

from embodied_rl.agents.repo.agent import RePo, RePoConfig

__all__ = ["RePo", "RePoConfig"]
