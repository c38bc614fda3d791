"""qscore: diffusion-model policies trained from rewards with Q-score matching (QSM)."""

from qscore.config import PRESETS, QSMConfig, RunConfig, TrainConfig, make_config

__all__ = ["PRESETS", "QSMConfig", "RunConfig", "TrainConfig", "make_config", "__version__"]
__version__ = "0.1.0"
