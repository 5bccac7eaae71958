"""The runner: a jobs file becomes Hydra commands, run by an executor."""
