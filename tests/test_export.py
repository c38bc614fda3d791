"""ONNX export: the exported graph gives the JAX policy's actions, and eval runs it."""

import re

import jax
import numpy as np
import pytest

from qscore.agents.qsm import create_qsm
from qscore.api import Policy
from qscore.cli import main
from qscore.config import make_config

from .conftest import TINY

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")
from qscore.export import OnnxAgent, export_onnx  # noqa: E402


@pytest.mark.parametrize("best_of_n", [1, 4])
def test_onnx_policy_gives_the_jax_actions_for_the_same_keys(tmp_path, best_of_n):
    config = make_config("fast", {**TINY, "best_of_n_eval": best_of_n}).agent
    agent = create_qsm(config, 5, 2, seed=0)  # untrained: the chain's actions are spread
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    policy = Policy(agent, low, high, obs_dim=5)
    onnx_agent = OnnxAgent(export_onnx(policy, tmp_path / "policy.onnx"), policy)
    rng = np.random.default_rng(0)
    unit_actions = []
    for index in range(10):
        obs = rng.normal(size=5).astype(np.float32)
        key = jax.random.PRNGKey(index)
        expected, expected_key = agent.act(obs, key, explore=False)
        action, next_key = onnx_agent.act(obs, key)
        np.testing.assert_allclose(action, expected, atol=2e-5)
        np.testing.assert_array_equal(np.asarray(next_key), np.asarray(expected_key))
        unit_actions.append(expected)
    assert np.ptp(np.stack(unit_actions), axis=0).min() > 0.1  # not all on a bound


def test_export_then_eval_with_onnxruntime_gives_the_jax_returns(tmp_path, capsys):
    run, onnx_file = tmp_path / "run", tmp_path / "policy.onnx"
    flags = ["--preset", "fast", "--actor-hidden", "32,32", "--critic-hidden", "32,32",
             "--batch-size", "16", "--steps", "150", "--warmup-steps", "100",
             "--eval-every", "0", "--eval-episodes", "1", "--no-progress"]  # fmt: skip
    assert main(["train", "--env", "Pendulum-v1", "--out", str(run), *flags]) == 0
    assert main(["export", str(run), "--out", str(onnx_file), "--best-of-n", "2"]) == 0
    capsys.readouterr()
    returns = []
    for extra in ([], ["--policy", str(onnx_file)]):
        assert main(["eval", str(run), "--episodes", "2", "--best-of-n", "2", *extra]) == 0
        printed = capsys.readouterr().out
        returns.append(float(re.search(r"return (-?[\d.]+)", printed).group(1)))
    assert returns[0] == pytest.approx(returns[1], abs=0.05)


def test_export_refuses_a_run_of_another_algorithm(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--actor-hidden", "32,32", "--critic-hidden", "32,32", "--batch-size", "16",
             "--steps", "120", "--warmup-steps", "100", "--eval-every", "0",
             "--eval-episodes", "1", "--no-progress"]  # fmt: skip
    assert main(["train", "--algo", "td3", "--env", "Pendulum-v1", "--out", str(run), *flags]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "ONNX export covers QSM policies" in capsys.readouterr().err
