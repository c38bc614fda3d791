"""The library's exception classes, in one module that imports nothing of qscore.

Each is re-exported where it used to live (``qscore.config.ConfigError``,
``qscore.envs.EnvError``, ``qscore.rundir.RunDirError``, ...), so either import works.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the problem."""


class EnvError(ValueError):
    """An environment qscore cannot train on; the message says why."""


class RunDirError(ValueError):
    """The run directory cannot be used (it exists and holds a run, or holds none to resume)."""


class TrainingDiverged(RuntimeError):
    """A loss, Q value, parameter, observation or reward became non-finite."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, message: str, status: str = "interrupted") -> None:
        super().__init__(message)
        self.status = status
