"""The methods, each one module composing the shared pieces, readable top to bottom.

- `embodied_rl.pipelines.ssorl`: SS-ORL (Zheng et al., ICML 2023), offline RL data where only some
  trajectories carry actions: split, inverse dynamics, proxy labels, experimental arms.

And the pipeline that makes the offline datasets the methods train on:

- `embodied_rl.pipelines.offline_datasets`: graded datasets after the D4RL recipe, from Meta-World's scripted
  policies and from the checkpoints and replay buffer of one SAC run (it loads agents, hence above trainers/).
"""
