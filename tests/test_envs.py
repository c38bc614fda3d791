import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

from qscore.envs import (
    EnvError,
    make_env,
    original_action_bounds,
    space_dims,
    to_task_units,
    to_unit_range,
    wrap_env,
)


def test_unknown_env_suggests_close_ids():
    with pytest.raises(EnvError, match="unknown environment id 'Pendulum-v9'.*Pendulum-v1"):
        make_env("Pendulum-v9")


def test_discrete_action_space_is_refused():
    with pytest.raises(EnvError, match="Discrete action space"):
        make_env("CartPole-v1")


def test_actions_are_rescaled_to_unit_box():
    env = make_env("Pendulum-v1", seed=0)  # native torque bounds are [-2, 2]
    np.testing.assert_array_equal(env.action_space.low, [-1.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0])
    assert space_dims(env) == (3, 1)


def test_the_action_rescaling_is_the_inverse_of_the_env_wrapper():
    """to_task_units maps an agent's action to what RescaleAction passes to the task."""
    task_env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), np.float32(0), np.float32(3))
    env = wrap_env(task_env, "Pendulum-v1 on [0, 3]")  # a RescaleAction of [0, 3] to [-1, 1]
    low, high = original_action_bounds(env)
    unit = np.array([-1.0, -0.25, 0.0, 0.6, 1.0], np.float32)[:, None]
    task = to_task_units(unit, low, high)
    expected = [env.action(u) for u in unit]  # what RescaleAction passes to the task
    np.testing.assert_allclose(task, expected, atol=1e-6)
    np.testing.assert_allclose(to_unit_range(task, low, high), unit, atol=1e-6)


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Hopper-v5"])
def test_mujoco_v4_and_v5_run(env_id):
    env = make_env(env_id, seed=0)
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    assert obs.shape == (11,) and np.isfinite(reward)


_NO_LIBEGL = """
import ctypes.util, os
import numpy as np
os.environ.pop("MUJOCO_GL", None)
ctypes.util.find_library = lambda name: None  # a machine without libEGL
from qscore.envs import EnvError, make_env
assert os.environ["MUJOCO_GL"] == "disable", os.environ["MUJOCO_GL"]
env = make_env("Hopper-v4", seed=0)
env.reset(seed=0)
env.step(np.zeros(3, np.float32))
for env_id in ("Hopper-v4", "dmc:cartpole-swingup"):
    try:
        make_env(env_id, render_mode="rgb_array")
    except EnvError as error:
        assert "libEGL" in str(error), error
    else:
        raise AssertionError(f"{env_id} rendered with rendering off")
make_env("Pendulum-v1", render_mode="rgb_array")  # not MuJoCo: still allowed
print("ok")
"""


def test_mujoco_tasks_train_without_libegl_and_refuse_to_render():
    """Where libEGL is missing (many GPU servers), MuJoCo must still simulate; only rendering
    is refused, with an error that says what to install."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_LIBEGL], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


_IMPORT_ORDER = """
import os, sys
os.environ.pop("MUJOCO_GL", None)
import qscore.dmc
assert "qscore.envs" not in sys.modules, "qscore.dmc imported qscore.envs"
assert os.environ.get("MUJOCO_GL") in ("egl", "disable"), os.environ.get("MUJOCO_GL")
import qscore.envs
heavy = {"dm_control", "mujoco"} & set(sys.modules)
assert not heavy, f"importing qscore.envs imported {heavy}"
print("ok")
"""


def test_dmc_does_not_import_envs_and_neither_imports_dm_control():
    """No import cycle: qscore.dmc needs only qscore.errors and qscore.envvars (which sets
    MUJOCO_GL first); dm_control and MuJoCo stay unimported until an env is made."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ORDER], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_errors_are_the_same_classes_in_their_old_modules():
    from qscore import config, envs, errors, rundir, training

    assert envs.EnvError is errors.EnvError and config.ConfigError is errors.ConfigError
    assert rundir.RunDirError is training.RunDirError is errors.RunDirError
    assert rundir.TrainingDiverged is training.TrainingDiverged is errors.TrainingDiverged
    assert rundir.TrainingInterrupted is errors.TrainingInterrupted


def test_making_an_env_gives_no_gymnasium_warning():
    """The action rescaling passes float32 bounds (float64 ones made Gymnasium warn on
    every command)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        make_env("Pendulum-v1", seed=0)


def test_rendering_a_pygame_task_without_pygame_is_refused_before_the_rollout(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pygame" else real_find_spec(name, *args),
    )
    with pytest.raises(EnvError, match=r"pygame, which is not installed \(pip install pygame\)"):
        make_env("Pendulum-v1", render_mode="rgb_array")
    make_env("Pendulum-v1")  # without rendering it needs no pygame


def test_trainable_env_ids_without_the_check_are_the_available_ones():
    from qscore.envs import available_env_ids, trainable_env_ids

    assert list(trainable_env_ids(check=False)) == available_env_ids()
