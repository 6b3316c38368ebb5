"""Training: config, trainer (truncated BPTT), checkpoints, distributed, metrics."""

from rnnkit.training.config import Config, ConfigError, apply_overrides, load_toml
from rnnkit.training.checkpoint import CheckpointError, load_checkpoint
from rnnkit.training.trainer import NonFiniteLoss, Trainer, detach_state

__all__ = ["Config", "ConfigError", "apply_overrides", "load_toml", "CheckpointError",
           "load_checkpoint", "NonFiniteLoss", "Trainer", "detach_state"]
