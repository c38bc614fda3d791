import sys

import numpy as np
import pytest

pytest.importorskip("dm_control")

from dm_env import StepType  # noqa: E402

from qscore.dmc import DMCEnv, dmc_env_ids, make_dmc_env, rescale_action  # noqa: E402
from qscore.envs import EnvError, available_env_ids, make_env, space_dims  # noqa: E402

CARTPOLE = "dmc:cartpole-swingup"


def run_episode(env: DMCEnv, seed: int) -> tuple[int, bool, bool]:
    env.reset(seed=seed)
    steps = 0
    while True:
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        steps += 1
        if terminated or truncated:
            return steps, terminated, truncated


def test_ids_cover_the_suite():
    ids = dmc_env_ids()
    assert ids == sorted(ids)
    for env_id in ["dmc:cheetah-run", "dmc:humanoid-walk", "dmc:dog-trot", "dmc:ball_in_cup-catch"]:
        assert env_id in ids
        assert env_id in available_env_ids()
    assert "Pendulum-v1" in available_env_ids()


def test_flat_observations_and_unit_actions():
    env = make_dmc_env(CARTPOLE, seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (5,) and obs.dtype == np.float32 and info == {}
    assert env.observation_space.shape == (5,) and env.observation_space.dtype == np.float32
    assert np.all(np.isinf(env.observation_space.low))
    np.testing.assert_array_equal(env.action_space.low, [-1.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0])
    assert env.action_space.dtype == np.float32
    obs, reward, *_ = env.step(env.action_space.sample())
    assert obs.shape == (5,) and obs.dtype == np.float32 and np.isfinite(reward)
    assert env.metadata["render_fps"] == 100  # control timestep 0.01 s


def test_rescale_action_maps_unit_box_to_bounds():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    np.testing.assert_allclose(rescale_action(np.array([-1.0, -1.0]), low, high), low)
    np.testing.assert_allclose(rescale_action(np.array([1.0, 1.0]), low, high), high)
    np.testing.assert_allclose(rescale_action(np.array([0.0, 0.5]), low, high), [0.0, 7.5])
    np.testing.assert_allclose(rescale_action(np.array([3.0, -7.0]), low, high), [2.0, 0.0])


def test_time_limit_truncates_after_1000_steps():
    assert run_episode(make_dmc_env(CARTPOLE, seed=0), seed=0) == (1000, False, True)


def test_action_repeat_sums_rewards_and_shortens_episodes():
    repeated = make_dmc_env(CARTPOLE, seed=0, action_repeat=4)
    assert repeated.metadata["render_fps"] == 25
    assert run_episode(repeated, seed=0) == (250, False, True)

    single = make_dmc_env(CARTPOLE, seed=0)
    action = np.array([0.7], np.float32)
    obs_single, _ = single.reset(seed=1)
    obs_repeated, _ = repeated.reset(seed=1)
    np.testing.assert_array_equal(obs_single, obs_repeated)
    steps = [single.step(action) for _ in range(4)]
    obs_repeated, reward, *_ = repeated.step(action)
    assert reward == pytest.approx(sum(step[1] for step in steps))
    assert reward > 0
    np.testing.assert_allclose(obs_repeated, steps[-1][0])


def test_discount_zero_terminates(monkeypatch):
    env = make_dmc_env(CARTPOLE, seed=0)
    env.reset(seed=0)
    last = env.dmc_env.step(np.zeros(1))._replace(step_type=StepType.LAST)
    assert last.discount == 1.0  # how dm_control ends an episode at its time limit
    monkeypatch.setattr(env.dmc_env, "step", lambda action: last)
    assert env.step(np.zeros(1))[2:4] == (False, True)
    monkeypatch.setattr(env.dmc_env, "step", lambda action: last._replace(discount=0.0))
    assert env.step(np.zeros(1))[2:4] == (True, False)


def test_reset_seed_fixes_initial_observation():
    env = make_dmc_env(CARTPOLE)
    first, _ = env.reset(seed=3)
    env.step(env.action_space.sample())
    env.reset()
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, make_dmc_env(CARTPOLE, seed=3).reset()[0])
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    ("env_id", "hint"),
    [("dmc:cheetah-runn", "did you mean dmc:cheetah-run"), ("dmc:nodomain-x", "cheetah")],
)
def test_unknown_ids_suggest_alternatives(env_id, hint):
    with pytest.raises(EnvError, match=f"unknown environment id '{env_id}'.*{hint}") as error:
        make_dmc_env(env_id)
    assert "\n" not in str(error.value)
    with pytest.raises(EnvError, match=hint):
        make_env(env_id)


def test_make_env_accepts_dmc_ids():
    env = make_env("dmc:cheetah-run", seed=0)
    assert isinstance(env, DMCEnv)
    assert space_dims(env) == (17, 6)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (17,) and np.isfinite(reward) and not (terminated or truncated)


def test_render_rgb_array():
    env = make_dmc_env(CARTPOLE, seed=0, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (480, 480, 3) and frame.dtype == np.uint8 and frame.any()
    assert make_dmc_env(CARTPOLE).render() is None


def test_missing_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # makes `import dm_control` fail
    with pytest.raises(EnvError, match=r'pip install "qscore\[dmc\]"'):
        make_dmc_env(CARTPOLE)
    assert "Pendulum-v1" in available_env_ids()
    assert not any(env_id.startswith("dmc:") for env_id in available_env_ids())
