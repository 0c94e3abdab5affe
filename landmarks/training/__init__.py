"""Fine-tuning embedding models: losses, M-per-class batches, the training loop and its config."""

from landmarks.training.config import ConfigError, TrainConfig, load_config
from landmarks.training.trainer import ResumeError, Trainer, train

__all__ = ["ConfigError", "ResumeError", "TrainConfig", "Trainer", "load_config", "train"]
