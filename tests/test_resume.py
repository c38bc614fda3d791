"""Nothing lost: exact resume, crash safety (SIGKILL), SIGTERM, divergence guard."""

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np
import pytest
from flax import serialization

from qscore.agents.qsm import create_qsm, update
from qscore.checkpoint import AGENT_FILE, agent_from_bytes, latest_checkpoint, list_checkpoints
from qscore.cli import main
from qscore.config import ConfigError, make_config
from qscore.logs import read_csv
from qscore.rundir import read_config, resumed_config
from qscore.training import TrainingDiverged, resume, train

from .conftest import TINY
from .helpers import ACTION_DIM, OBS_DIM, leaves_equal, random_batches, write_saved_config

TINY_FLAGS = [
    "--preset", "fast", "--actor-hidden", "32,32", "--critic-hidden", "32,32",
    "--time-features", "8", "--time-hidden", "16,16", "--batch-size", "16",
]  # fmt: skip


def _config(total_steps: int, env_id: str = "Pendulum-v1", **train):
    values = {
        "env_id": env_id,
        "total_steps": total_steps,
        "warmup_steps": 100,
        "eval_every": 150,
        "eval_episodes": 2,
        "checkpoint_every": 150,
        "log_every": 50,
        **train,
    }
    return make_config("fast", TINY, values)


def _learning_columns(run: Path) -> list[list[str]]:
    """train.csv without the timing columns, which differ between any two runs."""
    rows = read_csv(run / "train.csv")
    return [[v for k, v in r.items() if k not in ("steps_per_sec", "wall_time")] for r in rows]


def _final_agent_bytes(run: Path) -> bytes:
    return (latest_checkpoint(run) / AGENT_FILE).read_bytes()


@pytest.mark.parametrize("pipeline", [False, True])
def test_n_steps_then_resume_equals_2n_steps_in_one_go(tmp_path, pipeline):
    # 450 = 2 * 225 steps: the resume happens in the middle of an episode (Pendulum: 200).
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(_config(450, pipeline=pipeline), whole, progress=False)
    train(_config(225, checkpoint_every=0, pipeline=pipeline), split, progress=False)
    resume(_config(450, pipeline=pipeline), split, progress=False)
    assert _final_agent_bytes(split) == _final_agent_bytes(whole)
    evals = [(r["step"], r["return_mean"]) for r in read_csv(whole / "eval.csv")]
    resumed_evals = [(r["step"], r["return_mean"]) for r in read_csv(split / "eval.csv")]
    # the split run also evaluated at its first end, step 225
    assert [e for e in resumed_evals if e[0] != "225"] == evals
    assert [r for r in _learning_columns(split) if r[0] != "225"] == _learning_columns(whole)
    summary = json.loads((split / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 450


def _train_command(run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qscore.cli", "train", *extra, "--no-progress"]


def _new_run_flags(run: Path) -> list[str]:
    return [
        "--env", "Pendulum-v1", "--steps", "400", "--warmup-steps", "100", "--seed", "5",
        "--eval-every", "200", "--eval-episodes", "1", "--checkpoint-every", "40",
        "--log-every", "40", "--out", str(run), *TINY_FLAGS,
    ]  # fmt: skip


def _wait_for_checkpoint(run: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list_checkpoints(run):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_train_command(reference, *_new_run_flags(reference)), check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    rng = random.Random(0)
    command = _train_command(run, *_new_run_flags(run))
    kills = 0
    while kills < 3:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for_checkpoint(run, process)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is not None:
            break  # finished before the kill
        process.kill()  # SIGKILL: no handler runs
        process.wait()
        kills += 1
        for checkpoint in list_checkpoints(run):  # every visible checkpoint is complete
            assert (checkpoint / "loop.json").is_file()
        json.loads((run / "config.json").read_text())
        command = _train_command(run, "--resume", str(run))
    if (
        not (run / "summary.json").is_file()
        or "completed" not in (run / "summary.json").read_text()
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert kills >= 1
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert _final_agent_bytes(run) == _final_agent_bytes(reference)
    assert _learning_columns(run) == _learning_columns(reference)


def test_sigterm_writes_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        _train_command(run, *_new_run_flags(run)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_checkpoint(run, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"qscore train --resume {run}" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("interrupted by SIGTERM at step")
    stopped_at = summary["steps"]
    assert latest_checkpoint(run).name == f"step_{stopped_at:09d}"
    assert (latest_checkpoint(run) / "replay.npz").is_file()
    done = subprocess.run(_train_command(run, "--resume", str(run)), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


class _ScaledPendulum(gym.Wrapper):
    """Pendulum whose reward is replaced after ``after`` steps by ``value``."""

    def __init__(self, value: float, after: int = 0) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        self.value, self.after, self.count = value, after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        return obs, (self.value if self.count > self.after else reward), terminated, truncated, info


gym.register("QscoreTest/NanReward-v0", entry_point=lambda: _ScaledPendulum(float("nan"), 130))
gym.register("QscoreTest/HugeReward-v0", entry_point=lambda: _ScaledPendulum(3e38, 160))


def test_non_finite_reward_stops_with_its_step(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="non-finite reward at step 131"):
        train(_config(450, "QscoreTest/NanReward-v0", checkpoint_every=50), run, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged: the environment returned a non-finite reward at step 131"
    assert latest_checkpoint(run).name == "step_000000100"


def test_diverging_losses_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"non-finite .*critic_loss.* at step \d+"):
        train(_config(450, "QscoreTest/HugeReward-v0", checkpoint_every=50), run, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("diverged: non-finite")
    good = latest_checkpoint(run)
    assert good is not None and int(good.name[5:]) < summary["steps"]


def _cli_error(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_resume_refuses_a_different_config_or_package_version(capsys, tmp_path):
    run = tmp_path / "run"
    train(_config(150), run, progress=False)
    code, err = _cli_error(capsys, ["train", "--resume", str(run), "--q-score-scale", "7"])
    assert code == 2 and "q_score_scale is 50.0 in the run, 7.0 given" in err
    saved = json.loads((run / "config.json").read_text())
    saved["versions"]["jax"] = "0.0.1"
    (run / "config.json").write_text(json.dumps(saved))
    code, err = _cli_error(capsys, ["train", "--resume", str(run), "--steps", "300"])
    assert code == 2 and "it ran with jax 0.0.1" in err


def test_resumed_config_refuses_a_changed_field_preset_algo_or_version(tmp_path):
    run = tmp_path / "run"
    config = _config(150)
    write_saved_config(run, config)
    assert resumed_config(run) == config
    same = {"q_score_scale": config.agent.q_score_scale, "actor_hidden": [32, 32]}
    extended = resumed_config(run, {**same, "total_steps": 300, "seed": 9}, "fast", "qsm")
    assert extended.train == dataclasses.replace(config.train, total_steps=300)  # seed kept
    assert extended.agent == config.agent
    refusals = [
        ({"overrides": {"q_score_scale": 7.0}}, "q_score_scale is 50.0 in the run, 7.0 given"),
        ({"overrides": {"utd": 3}}, "with a different config: utd is"),
        ({"preset": "paper"}, "with preset 'paper': it ran 'fast'"),
        ({"algo": "sac"}, "with algo 'sac': it ran 'qsm'"),
        ({"overrides": {"alpha": 0.1}}, "unknown qsm or training field(s): alpha"),
    ]
    for given, message in refusals:
        with pytest.raises(ConfigError) as error:
            resumed_config(run, **given)
        assert message in str(error.value) and str(run) in str(error.value)
    saved = read_config(run)
    saved["versions"]["numpy"] = "0.0.1"
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="it ran with numpy 0.0.1, this environment has"):
        resumed_config(run, {"total_steps": 300})


def test_resume_of_a_finished_run_needs_more_steps(capsys, tmp_path):
    run = tmp_path / "run"
    train(_config(150), run, progress=False)
    code, err = _cli_error(capsys, ["train", "--resume", str(run), "--no-progress"])
    assert code == 2 and "already ran 150 steps" in err
    code, _ = _cli_error(capsys, ["train", "--resume", str(run), "--steps", "200", "--no-progress"])
    assert code == 0
    assert [r["step"] for r in read_csv(run / "eval.csv")] == ["150", "200"]


def test_resume_of_something_that_is_not_a_run(capsys, tmp_path):
    code, err = _cli_error(capsys, ["train", "--resume", str(tmp_path)])
    assert code == 2 and "not a run directory" in err


class _DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Box(-1, 1, (1,))


class _ImageObsEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (1,))


gym.register("QscoreTest/DictObs-v0", entry_point=_DictObsEnv)
gym.register("QscoreTest/ImageObs-v0", entry_point=_ImageObsEnv)


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("QscoreTest/DictObs-v0", "Dict observation space"),
        ("QscoreTest/ImageObs-v0", "images or grids"),
    ],
)
def test_unsupported_observations_are_refused(capsys, tmp_path, env_id, message):
    code, err = _cli_error(capsys, ["train", "--env", env_id, "--out", str(tmp_path / "r")])
    assert code == 2 and message in err and "\n" not in err


def test_checkpoints_without_later_fields_load_with_their_initial_values(tiny_config):
    # A QSM checkpoint written before the temperature field existed: the field is filled with the
    # config's fixed lambda, and every stored array is restored as written.
    config = dataclasses.replace(tiny_config, q_score_target="normalized", q_score_temperature=0.6)
    agent, _ = update(create_qsm(config, OBS_DIM, ACTION_DIM, seed=0), random_batches(2, 16))
    state = serialization.to_state_dict(jax.device_get(agent))
    del state["temperature"]
    old = serialization.msgpack_serialize(state)
    template = create_qsm(config, OBS_DIM, ACTION_DIM, seed=1)
    restored = agent_from_bytes(old, template)
    np.testing.assert_allclose(float(restored.temperature), 0.6, rtol=1e-6)
    assert leaves_equal(restored.actor_params, agent.actor_params)
    assert leaves_equal(restored.critic_params, agent.critic_params)
    assert int(restored.num_updates) == 2
