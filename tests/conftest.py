"""Shared fixtures: tiny networks so that every update compiles and runs in milliseconds."""

import pytest

from qscore.config import QSMConfig, make_config

TINY = {
    "actor_hidden": (32, 32),
    "critic_hidden": (32, 32),
    "time_features": 8,
    "time_hidden": (16, 16),
    "batch_size": 16,
}


@pytest.fixture
def tiny_config() -> QSMConfig:
    return make_config("fast", TINY).agent
