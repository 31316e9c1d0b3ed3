"""Text2Reward (Xie et al., ICLR 2024): dense reward code written by an LLM from a task description, checked,
sandboxed, trained on and refined. Modules: `abstraction` (the Pythonic description of an environment family that
the prompt shows, and the attributes generated code may read), `snapshot` (those attributes read from a live env
each step, as plain data), `checker` (static checks of a program before it runs), `prompts` and `generation` (asking
the LLM, extracting the function, retries with the checker's messages), `sandbox` (running accepted code in
resource-limited worker processes)."""
