"""The benchmark scripts run (on tiny shapes): their figures are measured, not tested, but a
script that no longer imports or calls what it times must fail here, not in a GPU session."""

import importlib.util
from pathlib import Path

import pytest

from qscore.agents.qsm import create_qsm

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learner_speed_breakdown_times_every_part(tiny_config):
    learner_speed = load_script("learner_speed")
    parts = learner_speed.breakdown(obs_dim=5, action_dim=2, repeats=1, config=tiny_config)
    assert "critic loss gradient" in parts and "QSM actor loss gradient" in parts
    reference = parts["critic loss gradient"]
    for name, figures in parts.items():
        assert figures["ms"] > 0, name
        # One matmul throughput for every part: the bound is proportional to the FLOPs.
        ratio = figures["gflop"] / reference["gflop"]
        assert figures["bound_ms"] == pytest.approx(ratio * reference["bound_ms"]), name


def test_learner_speed_latency_floor(tiny_config):
    learner_speed = load_script("learner_speed")
    agent = create_qsm(tiny_config, obs_dim=5, action_dim=2, seed=0)
    floor = learner_speed.latency_floor_us(agent, obs_dim=5, repeats=1)
    assert floor["dispatch_us"] > 0 and floor["hidden_matvec_us"] > 0
