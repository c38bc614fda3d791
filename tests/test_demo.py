"""The multimodal bandit, its registration, the mode statistics and `qscore demo multimodal`.

The demo tests train QSM and SAC for real (short runs; the second demo reuses the compiled
updates of the first). What they assert, with the values measured over seeds 0, 1 and 2 at
1200 steps in brackets:

* four peaks: QSM has >= 12% of its samples within 0.3 of every peak [16-23%] and >= 60%
  near some peak [81-82%]; SAC's Gaussian does not: it spreads over the middle [33-37%
  near any peak];
* two peaks: SAC puts >= 90% of its samples nearest one peak [100%], QSM >= 30% nearest
  each [46-54%] and >= 12% within 0.3 of each [20-25%].

:func:`test_criteria_reject_collapsed_and_uniform_samples` checks that the same criteria
fail for a policy collapsed on one peak and for uniform actions.
"""

import contextlib
import io
import json

import gymnasium as gym
import numpy as np
import pytest

from qscore.bandit import (
    BIMODAL_ID,
    MULTIMODAL_ID,
    MultimodalBandit,
    bandit_peaks,
    default_peaks,
    register_bandits,
)
from qscore.cli import main
from qscore.demo import ALGOS, mode_shares, run_multimodal_demo
from qscore.envs import available_env_ids, make_env, space_dims

STEPS = 1200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def covers_every_peak(result: dict) -> bool:
    """Substantial mass on every peak: >= 12% of samples within the near radius of each, and
    >= 60% near some peak (so spreading evenly over the whole box does not count)."""
    return min(result["share_near_peak"]) >= 0.12 and result["share_near_any"] >= 0.6


def concentrates_on_one_peak(result: dict) -> bool:
    """>= 90% of samples nearest to one peak, and >= 80% within the near radius of it."""
    top = int(np.argmax(result["share_per_peak"]))
    return result["share_per_peak"][top] >= 0.9 and result["share_near_peak"][top] >= 0.8


def test_bandit_spaces_reward_and_episode_length():
    env = MultimodalBandit()
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.observation_space.shape == (1,)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    peaks = default_peaks(4)
    np.testing.assert_array_equal(bandit_peaks(env), peaks)
    np.testing.assert_array_equal(np.abs(peaks), 0.5)
    peak_rewards = []
    for peak in peaks:
        next_obs, reward, terminated, truncated, _ = env.step(peak)
        np.testing.assert_array_equal(next_obs, obs)
        assert terminated and not truncated
        peak_rewards.append(reward)
    np.testing.assert_allclose(peak_rewards, peak_rewards[0], rtol=1e-6)  # equal peaks
    assert peak_rewards[0] == pytest.approx(1.0, abs=0.01)
    # Every peak is a strict local maximum, and the reward between peaks is much lower.
    for peak in peaks:
        for offset in ([0.05, 0.0], [0.0, -0.05], [0.04, 0.04]):
            assert env.reward(peak + np.asarray(offset)) < peak_rewards[0]
    for between in ([0.0, 0.0], [0.0, 0.5], [0.5, 0.0], [1.0, 1.0]):
        assert env.reward(np.asarray(between)) < 0.55 * peak_rewards[0]
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 81)] * 2), -1).reshape(-1, 2)
    assert env.reward(grid).max() <= peak_rewards[0] + 1e-9


def test_bandit_options_and_bad_peaks():
    two = MultimodalBandit(peaks=default_peaks(2), width=0.2)
    np.testing.assert_array_equal(bandit_peaks(two), [[-0.5, -0.5], [0.5, 0.5]])
    assert two.reward(np.array([0.5, 0.5])) == pytest.approx(1.0, abs=1e-6)
    _, reward, *_ = two.step(np.array([5.0, 5.0], np.float32))  # clipped into the box
    assert reward == pytest.approx(two.reward(np.array([1.0, 1.0])))
    with pytest.raises(ValueError, match="shape"):
        MultimodalBandit(peaks=[0.5, 0.5])
    with pytest.raises(ValueError, match="inside the action box"):
        MultimodalBandit(peaks=[[1.5, 0.0]])
    with pytest.raises(ValueError, match="width"):
        MultimodalBandit(width=0.0)
    with pytest.raises(ValueError, match="2 or 4"):
        default_peaks(3)


def test_registered_and_made_through_make_env():
    register_bandits()  # a second registration changes nothing
    register_bandits()
    assert {MULTIMODAL_ID, BIMODAL_ID} <= set(available_env_ids())
    for env_id, num_peaks in ((MULTIMODAL_ID, 4), (BIMODAL_ID, 2)):
        env = make_env(env_id, seed=0)
        assert space_dims(env) == (1, 2)
        np.testing.assert_array_equal(bandit_peaks(env), default_peaks(num_peaks))
        env.reset(seed=0)
        _, reward, terminated, truncated, _ = env.step(default_peaks(num_peaks)[0])
        assert terminated and not truncated and reward == pytest.approx(1.0, abs=0.01)


def test_mode_shares_statistics():
    peaks = default_peaks(4)
    samples = np.concatenate([peaks[[0]] + 0.1, peaks[[0]], peaks[[1]], [[0.0, 0.9]]])
    result = mode_shares(samples, peaks, radius=0.3)
    assert result["share_per_peak"] == [0.5, 0.5, 0.0, 0.0]  # (0, 0.9) is nearest peak 1
    assert result["share_near_peak"] == [0.5, 0.25, 0.0, 0.0]
    assert result["share_near_any"] == 0.75 and result["max_share"] == 0.5


def test_criteria_reject_collapsed_and_uniform_samples():
    rng = np.random.default_rng(0)
    peaks = default_peaks(4)
    collapsed = peaks[3] + 0.05 * rng.normal(size=(1000, 2))
    uniform = rng.uniform(-1.0, 1.0, size=(1000, 2))
    mixture = peaks[rng.integers(0, 4, 1000)] + 0.08 * rng.normal(size=(1000, 2))
    smear = np.clip(0.45 * rng.normal(size=(1000, 2)), -1, 1)  # like SAC's Gaussian
    assert not covers_every_peak(mode_shares(collapsed, peaks))
    assert not covers_every_peak(mode_shares(uniform, peaks))
    assert not covers_every_peak(mode_shares(smear, peaks))
    assert covers_every_peak(mode_shares(mixture, peaks))
    assert concentrates_on_one_peak(mode_shares(collapsed, peaks))
    assert not concentrates_on_one_peak(mode_shares(mixture, peaks))
    assert not concentrates_on_one_peak(mode_shares(uniform, peaks))


def test_demo_cli_errors_touch_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "unimodal", "--out", str(out)]) == 2
    assert "unknown demo 'unimodal'; choose one of: multimodal" in capsys.readouterr().err
    assert main(["demo", "multimodal", "--out", str(out), "--steps", "99"]) == 2
    assert "--steps must be at least" in capsys.readouterr().err
    assert not out.exists()
    (out / "sac").mkdir(parents=True)
    (out / "sac" / "keep.txt").write_text("mine")
    assert main(["demo", "multimodal", "--out", str(out), "--steps", "100"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["sac"]
    assert (out / "sac" / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def four_peaks(tmp_path_factory):
    """The demo on four peaks through the command line; returns (out dir, stdout)."""
    out = tmp_path_factory.mktemp("demo") / "four"
    stdout = io.StringIO()
    argv = ["demo", "multimodal", "--out", str(out), "--steps", str(STEPS), "--no-progress"]
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return out, stdout.getvalue()


def test_demo_writes_pictures_and_modes(four_peaks):
    out, stdout = four_peaks
    for name in ("contours.png", "final_actions.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    modes = json.loads((out / "modes.json").read_text())
    assert sorted(modes) == sorted(ALGOS)
    for algo, result in modes.items():
        assert result["peaks"] == default_peaks(4).tolist()
        assert result["num_samples"] == 1000 and result["step"] == STEPS
        assert sum(result["share_per_peak"]) == pytest.approx(1.0, abs=1e-3)
        assert [snap["step"] for snap in result["over_training"]] == [0, 300, 600, 900, 1200]
        assert (out / algo / "checkpoints").is_dir() and (out / algo / "config.json").is_file()
        assert f"{algo}: share of 1000 final samples nearest each peak" in stdout
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert "modes.json" in stdout and "contours.png" in stdout


def test_qsm_covers_four_peaks_and_sac_does_not(four_peaks):
    modes = json.loads((four_peaks[0] / "modes.json").read_text())
    qsm, sac = modes["qsm"], modes["sac"]
    assert covers_every_peak(qsm), qsm
    assert min(qsm["share_per_peak"]) >= 0.15, qsm
    assert qsm["explore"] is False and sac["explore"] is True
    assert not covers_every_peak(sac), sac
    assert qsm["mean_reward"] > sac["mean_reward"]


def test_two_peaks_sac_concentrates_on_one_and_qsm_keeps_both(tmp_path):
    modes = run_multimodal_demo(tmp_path, STEPS, num_peaks=2, progress=False, plots=False)
    qsm, sac = modes["qsm"], modes["sac"]
    assert concentrates_on_one_peak(sac), sac
    assert min(qsm["share_per_peak"]) >= 0.3, qsm
    assert min(qsm["share_near_peak"]) >= 0.12, qsm
    assert not concentrates_on_one_peak(qsm)
    assert json.loads((tmp_path / "modes.json").read_text()) == modes
