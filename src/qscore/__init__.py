"""qscore: diffusion-model policies trained from rewards with Q-score matching (QSM).

The Python API (docs/api.md): :func:`make_config`, :func:`train`, :func:`load`,
:class:`Policy` and :func:`evaluate_run`, loaded on first use (so that ``import qscore`` and
the command line's quick checks do not import JAX).
"""

from typing import Any

from qscore.config import PRESETS, QSMConfig, RunConfig, TrainConfig

API_NAMES = ("EvalResult", "Policy", "TrainResult", "evaluate_run", "load", "make_config", "train")

__all__ = ["PRESETS", "QSMConfig", "RunConfig", "TrainConfig", "__version__", *API_NAMES]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from qscore import api

        return getattr(api, name)
    raise AttributeError(f"module 'qscore' has no attribute {name!r}")
