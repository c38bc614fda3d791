"""ONNX export: the exported graph gives the JAX policy's actions, and eval runs it."""

import re
from dataclasses import replace

import jax
import numpy as np
import pytest

from qscore.agents.qsm import create_qsm
from qscore.agents.sac import create_sac
from qscore.agents.td3 import create_td3
from qscore.api import Policy
from qscore.cli import main
from qscore.config import ConfigError, make_config
from qscore.diffusion import chain_noise

from .conftest import TINY

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")
from qscore.export import OBS_INPUT, OnnxAgent, _chain_draws, export_onnx  # noqa: E402

BASELINE_FLAGS = ["--actor-hidden", "32,32", "--critic-hidden", "32,32", "--batch-size", "16",
                  "--steps", "300", "--warmup-steps", "200", "--eval-every", "0",
                  "--eval-episodes", "1", "--no-progress"]  # fmt: skip


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
    assert main(["eval", str(run), "--best-of-n", "3", "--policy", str(onnx_file)]) == 2
    assert "picks the best of 2 samples" in capsys.readouterr().err


def test_the_jitted_draws_are_the_chain_noise_of_the_same_key():
    key = jax.random.PRNGKey(7)
    next_key, chain_key, _ = jax.random.split(key, 3)  # as QSM's action selection
    drawn_key, noise = _chain_draws(key, shape=(4, 2), num_steps=5)
    np.testing.assert_array_equal(np.asarray(noise), chain_noise(chain_key, (4, 2), 5))
    np.testing.assert_array_equal(np.asarray(drawn_key), np.asarray(next_key))


@pytest.mark.parametrize(
    "algo, explore",
    [("sac", False), ("sac", True), ("td3", False)],
    ids=["sac", "sac-sampled", "td3"],
)
def test_baseline_onnx_policies_give_the_jax_actions(tmp_path, algo, explore):
    """SAC's tanh(mu) or (exported with explore=True) its sampled action, TD3's actor."""
    create = {"sac": create_sac, "td3": create_td3}[algo]
    config = make_config("paper", {"actor_hidden": (32, 32), "critic_hidden": (32, 32)}, algo=algo)
    agent = create(config.agent, 5, 2, 0)
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    policy = Policy(agent, low, high, obs_dim=5, explore=explore)
    onnx_agent = OnnxAgent(export_onnx(policy, tmp_path / "policy.onnx"), policy)
    rng = np.random.default_rng(0)
    for index in range(10):
        obs = 3.0 * rng.normal(size=5).astype(np.float32)
        key = jax.random.PRNGKey(index)
        expected, expected_key = agent.act(obs, key, explore=explore)
        action, next_key = onnx_agent.act(obs, key)
        np.testing.assert_allclose(action, expected, atol=2e-5)
        np.testing.assert_array_equal(np.asarray(next_key), np.asarray(expected_key))
        if not explore:  # the graph's own output: the Policy's action, in the task's units
            (raw,) = onnx_agent.session.run(None, {OBS_INPUT: obs[None]})
            np.testing.assert_allclose(raw[0], policy(obs), atol=5e-5)
    with pytest.raises(ConfigError, match="no exploration noise"):
        onnx_agent.act(obs, key, explore=True)


def test_exploration_noise_is_not_exported(tmp_path):
    config = make_config("paper", {"actor_hidden": (32, 32), "critic_hidden": (32, 32)}, algo="td3")
    bounds = np.ones(2, np.float32)
    policy = Policy(create_td3(config.agent, 5, 2, 0), -bounds, bounds, 5, explore=True)
    with pytest.raises(ConfigError, match="deterministic actor"):
        export_onnx(policy, tmp_path / "td3.onnx")
    qsm_agent = create_qsm(make_config("fast", TINY).agent, 5, 2, seed=0)
    with pytest.raises(ConfigError, match="without exploration noise"):
        export_onnx(replace(policy, agent=qsm_agent), tmp_path / "qsm.onnx")


@pytest.fixture(scope="module")
def baseline_runs(tmp_path_factory):
    """A tiny SAC run and a tiny TD3 run on Pendulum-v1."""
    root = tmp_path_factory.mktemp("baselines")
    for algo in ("sac", "td3"):
        out = str(root / algo)
        assert (
            main(["train", "--algo", algo, "--env", "Pendulum-v1", "--out", out, *BASELINE_FLAGS])
            == 0
        )
    return root


def eval_return(capsys, *args: str) -> float:
    capsys.readouterr()
    assert main(["eval", *args, "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    return float(re.search(r"return (-?[\d.]+)", printed).group(1))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_baseline_export_then_eval_gives_the_jax_returns(baseline_runs, tmp_path, capsys, algo):
    run, onnx_file = str(baseline_runs / algo), str(tmp_path / "policy.onnx")
    assert main(["export", run, "--out", onnx_file]) == 0
    expected = eval_return(capsys, run)
    assert eval_return(capsys, run, "--policy", onnx_file) == pytest.approx(expected, abs=0.05)


def test_sac_sampled_export_runs_in_eval(baseline_runs, tmp_path, capsys):
    run, onnx_file = str(baseline_runs / "sac"), str(tmp_path / "sampled.onnx")
    assert main(["export", run, "--out", onnx_file, "--stochastic"]) == 0
    assert "sac policy (sampled)" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["eval", run, "--episodes", "1", "--policy", onnx_file]) == 0
    assert "actions sampled from the policy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "algo, flags, message",
    [
        ("sac", ["--best-of-n", "2"], "--best-of-n needs a qsm run"),
        ("td3", ["--best-of-n", "2"], "--best-of-n needs a qsm run"),
        (
            "td3",
            ["--stochastic"],
            "--stochastic needs a sac run; .* is td3, whose exported policy is deterministic",
        ),
    ],
)
def test_export_options_of_another_algorithm_exit_2(
    baseline_runs, tmp_path, capsys, algo, flags, message
):
    out = tmp_path / "p.onnx"
    assert main(["export", str(baseline_runs / algo), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1
    assert not out.exists()


def test_eval_refuses_a_file_of_another_algorithm(baseline_runs, tmp_path, capsys):
    onnx_file = str(tmp_path / "td3.onnx")
    assert main(["export", str(baseline_runs / "td3"), "--out", onnx_file]) == 0
    capsys.readouterr()
    assert main(["eval", str(baseline_runs / "sac"), "--policy", onnx_file]) == 2
    err = capsys.readouterr().err
    assert "holds a td3 policy; the run is sac" in err and err.count("\n") == 1


def test_export_run_refuses_options_of_another_algorithm_before_loading(tmp_path):
    from qscore.export import export_run

    from .helpers import write_saved_config

    run, out = tmp_path / "run", tmp_path / "td3.onnx"
    write_saved_config(run, make_config("fast", algo="td3"))  # no checkpoint
    with pytest.raises(ConfigError, match=f"--best-of-n needs a qsm run; {run} is td3"):
        export_run(run, out, best_of_n=2)
    with pytest.raises(ConfigError, match="--stochastic needs a sac run; .* is td3, whose"):
        export_run(run, out, stochastic=True)
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        export_run(run, out)
    assert not out.exists()
