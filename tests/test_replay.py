import numpy as np
import pytest

from qscore.replay import ReplayBuffer, replay_bytes

GAMMA = 0.5


def _fill(buffer: ReplayBuffer, count: int) -> None:
    for i in range(count):
        value = float(i + 1)
        buffer.add(np.full(3, value), np.full(2, value), value, np.full(3, -value), i % 2 == 0)


def test_wraps_around_and_keeps_the_newest_rows():
    buffer = ReplayBuffer(3, 2, capacity=5)
    _fill(buffer, 8)
    assert len(buffer) == 5
    assert buffer.cursor == 3
    assert sorted(buffer.reward.tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    np.testing.assert_array_equal(buffer.obs[0], np.full(3, 6.0))  # row 0 overwritten by #6


def test_samples_only_written_rows():
    buffer = ReplayBuffer(3, 2, capacity=100)
    _fill(buffer, 10)
    batch = buffer.sample(np.random.default_rng(0), (4, 250))
    assert batch.obs.shape == (4, 250, 3) and batch.action.shape == (4, 250, 2)
    assert batch.reward.shape == (4, 250)
    assert set(np.unique(batch.reward)) == set(np.arange(1.0, 11.0))
    np.testing.assert_array_equal(batch.next_obs[..., 0], -batch.reward)
    np.testing.assert_array_equal(batch.terminated, (batch.reward % 2 == 1).astype(np.float32))


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, 2, 10).sample(np.random.default_rng(0), (2,))


def test_refuses_a_buffer_larger_than_memory():
    with pytest.raises(MemoryError, match="buffer-size"):
        ReplayBuffer(10_000, 10, capacity=10**9)


def test_memory_per_million_humanoid_transitions():
    # Humanoid-v4: 376-dim observations, 17-dim actions -> about 3.1 GB per 1M transitions.
    assert 2.9e9 < replay_bytes(376, 17, 1_000_000) < 3.2e9


def _episodes(
    buffer: ReplayBuffer, lengths: list[int], ends_by: str = "terminated", going_on: bool = False
) -> None:
    """Episodes of the given lengths; step t of the whole stream has reward t and obs t.
    With ``going_on`` the last episode has not ended yet."""
    t = 0
    for number, length in enumerate(lengths):
        for i in range(length):
            last = i == length - 1 and not (going_on and number == len(lengths) - 1)
            terminated = last and ends_by == "terminated"
            obs, next_obs = np.full(3, t, np.float32), np.full(3, t + 1, np.float32)
            buffer.add(obs, np.zeros(2), float(t), next_obs, terminated, last)
            t += 1


def _every_row(buffer: ReplayBuffer, n_step: int):
    """An n-step sample of many rows, sorted by the row's first step."""
    batch = buffer.sample(np.random.default_rng(0), (2000,), n_step, GAMMA)
    _, first = np.unique(batch.obs[:, 0], return_index=True)
    return type(batch)(*(column[first] for column in batch))


def test_n_step_sums_discounted_rewards_within_an_episode():
    buffer = ReplayBuffer(3, 2, capacity=100)
    _episodes(buffer, [10])
    batch = _every_row(buffer, 3)
    assert len(batch.obs) == 10
    start = batch.obs[:7, 0]  # rows with three steps left before the episode's end
    np.testing.assert_array_equal(batch.horizon[:7], 3.0)
    expected = start + GAMMA * (start + 1) + GAMMA**2 * (start + 2)
    np.testing.assert_allclose(batch.reward[:7], expected)
    np.testing.assert_array_equal(batch.next_obs[:7, 0], start + 3)
    np.testing.assert_array_equal(batch.terminated[:7], 0.0)


@pytest.mark.parametrize("ends_by", ["terminated", "truncated"])
def test_n_step_stops_at_the_end_of_an_episode(ends_by):
    buffer = ReplayBuffer(3, 2, capacity=100)
    _episodes(buffer, [4, 6], ends_by)
    batch = _every_row(buffer, 3)
    # Rows 2 and 3 of the first episode (steps 2, 3) reach its end after 2 and 1 steps.
    np.testing.assert_array_equal(batch.horizon[2:4], [2.0, 1.0])
    np.testing.assert_allclose(batch.reward[2:4], [2 + GAMMA * 3, 3])
    np.testing.assert_array_equal(batch.next_obs[2:4, 0], [4, 4])  # the final observation
    flag = 1.0 if ends_by == "terminated" else 0.0  # truncation keeps the bootstrap
    np.testing.assert_array_equal(batch.terminated[2:4], [flag, flag])
    # Step 1 does not run into the second episode, whose first row starts at step 4.
    np.testing.assert_array_equal(batch.horizon[:2], [3.0, 3.0])
    np.testing.assert_array_equal(batch.horizon[4], 3.0)
    np.testing.assert_allclose(batch.reward[4], 4 + GAMMA * 5 + GAMMA**2 * 6)


def test_n_step_stops_at_the_newest_row_and_never_wraps_into_old_rows():
    buffer = ReplayBuffer(3, 2, capacity=8)
    _episodes(buffer, [11], going_on=True)  # an unfinished episode, steps 0-10; 3-10 kept
    np.testing.assert_array_equal(buffer.cursor, 3)
    batch = _every_row(buffer, 4)
    np.testing.assert_array_equal(batch.obs[:, 0], np.arange(3, 11))
    # The newest rows (steps 8, 9 and 10) have fewer than 4 steps written after them.
    np.testing.assert_array_equal(batch.horizon, [4, 4, 4, 4, 4, 3, 2, 1])
    np.testing.assert_array_equal(batch.next_obs[:, 0], [7, 8, 9, 10, 11, 11, 11, 11])


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_n_step_fraction_mixes_one_step_and_n_step_rows(fraction):
    buffer = ReplayBuffer(3, 2, capacity=100)
    _episodes(buffer, [100], going_on=True)
    batch = buffer.sample(np.random.default_rng(0), (4000,), 3, GAMMA, fraction)
    start = batch.obs[:, 0]
    inside = start < 97  # rows with three written steps after them
    horizon = batch.horizon[inside]
    assert set(np.unique(horizon)) <= {1.0, 3.0}
    assert abs(np.mean(horizon == 3.0) - fraction) < 0.03
    one = horizon == 1.0
    np.testing.assert_allclose(batch.reward[inside][one], start[inside][one])
    np.testing.assert_array_equal(batch.next_obs[inside][one, 0], start[inside][one] + 1)
    three = start[inside][~one]
    expected = three + GAMMA * (three + 1) + GAMMA**2 * (three + 2)
    np.testing.assert_allclose(batch.reward[inside][~one], expected)


def test_one_step_samples_are_the_stored_transitions():
    buffer = ReplayBuffer(3, 2, capacity=100)
    _episodes(buffer, [5, 5])
    batch = _every_row(buffer, 1)
    np.testing.assert_array_equal(batch.reward, batch.obs[:, 0])
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)
    np.testing.assert_array_equal(batch.horizon, 1.0)
    np.testing.assert_array_equal(batch.terminated, (batch.obs[:, 0] % 5 == 4).astype(np.float32))


def test_a_state_saved_without_episode_ends_gets_them_inferred():
    buffer = ReplayBuffer(3, 2, capacity=100)
    _episodes(buffer, [4, 6], ends_by="truncated")
    state = buffer.state_dict()
    old_state = {name: values for name, values in state.items() if name != "episode_end"}
    # A reset observation never continues the previous episode's last one.
    old_state["obs"] = old_state["obs"].copy()
    old_state["obs"][4] = -1.0
    restored = ReplayBuffer(3, 2, capacity=100)
    restored.load_state(old_state)
    expected = state["episode_end"].copy()
    expected[-1] = 1.0  # the newest row: whether its episode goes on is unknown
    np.testing.assert_array_equal(restored.episode_end[:10], expected)
    round_trip = ReplayBuffer(3, 2, capacity=100)
    round_trip.load_state(state)
    np.testing.assert_array_equal(round_trip.episode_end[:10], state["episode_end"])
