"""The device replay buffer: pure insert and sample, n-step returns, state round trips."""

import jax
import numpy as np
import pytest

from qscore.replay import (
    Batch,
    Replay,
    create_replay,
    insert,
    load_replay,
    replay_bytes,
    replay_state,
    sample,
)

GAMMA = 0.5
_insert = jax.jit(insert)


def _add(replay: Replay, obs, action, reward, next_obs, terminated, end=None) -> Replay:
    end = terminated if end is None else end
    return _insert(replay, obs, action, reward, next_obs, float(terminated), float(end))


def _fill(replay: Replay, count: int) -> Replay:
    for i in range(count):
        value = float(i + 1)
        replay = _add(
            replay, np.full(3, value), np.full(2, value), value, np.full(3, -value), i % 2 == 0
        )
    return replay


def _sample(replay: Replay, shape, n_step=1, discount=1.0, fraction=1.0, seed=0) -> Batch:
    batch = sample(replay, jax.random.PRNGKey(seed), shape, n_step, discount, fraction)
    return Batch(*(np.asarray(column) for column in batch))


def test_wraps_around_and_keeps_the_newest_rows():
    replay = _fill(create_replay(3, 2, capacity=5), 8)
    assert int(replay.size) == 5
    assert int(replay.cursor) == 3
    assert sorted(np.asarray(replay.rows.reward).tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    np.testing.assert_array_equal(replay.rows.obs[0], np.full(3, 6.0))  # row 0 overwritten by #6


def test_samples_only_written_rows():
    replay = _fill(create_replay(3, 2, capacity=100), 10)
    batch = _sample(replay, (4, 250))
    assert batch.obs.shape == (4, 250, 3) and batch.action.shape == (4, 250, 2)
    assert batch.reward.shape == (4, 250)
    assert set(np.unique(batch.reward)) == set(np.arange(1.0, 11.0))
    np.testing.assert_array_equal(batch.next_obs[..., 0], -batch.reward)
    np.testing.assert_array_equal(batch.terminated, (batch.reward % 2 == 1).astype(np.float32))


def test_stacked_buffers_of_seeds_are_independent():
    """Two seeds' buffers stacked on a leading axis, filled and sampled with vmap, hold and
    give exactly what each buffer alone does."""
    stacked = create_replay(3, 2, capacity=6, seeds=2)
    alone = [create_replay(3, 2, capacity=6) for _ in range(2)]
    vinsert = jax.jit(jax.vmap(insert))
    for t in range(9):
        rows = [(np.full(3, 10 * s + t), np.full(2, t), float(10 * s + t)) for s in range(2)]
        obs, action, reward = (np.stack(column) for column in zip(*rows, strict=True))
        ends = np.asarray([t % 4 == 3, t % 3 == 2], np.float32)
        stacked = vinsert(stacked, obs, action, reward, obs + 1, ends, ends)
        alone = [
            _add(alone[s], obs[s], action[s], reward[s], obs[s] + 1, ends[s]) for s in range(2)
        ]
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    together = jax.vmap(lambda r, k: sample(r, k, (50,), 3, GAMMA, 0.5))(stacked, keys)
    for s in range(2):
        single = sample(alone[s], keys[s], (50,), 3, GAMMA, 0.5)
        for a, b in zip(together, single, strict=True):
            np.testing.assert_array_equal(np.asarray(a)[s], np.asarray(b))
        assert set(np.unique(np.asarray(together.obs)[s, :, 0]) // 10) == {s}


def test_state_round_trip_rebuilds_the_buffer_exactly():
    replay = _fill(create_replay(3, 2, capacity=5), 8)  # wrapped: oldest row is #4
    state = replay_state(replay)
    np.testing.assert_array_equal(state["reward"], [4, 5, 6, 7, 8])
    restored = load_replay(create_replay(3, 2, capacity=5), state)
    again = replay_state(restored)
    for name, values in state.items():
        np.testing.assert_array_equal(again[name], values)
    for a, b in zip(_every_row(replay, 2), _every_row(restored, 2), strict=True):
        np.testing.assert_array_equal(a, b)  # the same n-step transitions from every row
    smaller = load_replay(create_replay(3, 2, capacity=3), state)  # keeps the newest rows
    np.testing.assert_array_equal(replay_state(smaller)["reward"], [6, 7, 8])


def test_refuses_a_buffer_larger_than_memory():
    with pytest.raises(MemoryError, match="buffer-size"):
        create_replay(10_000, 10, capacity=10**9)
    with pytest.raises(MemoryError, match="for each of 4 seeds"):
        create_replay(10_000, 10, capacity=10**8, seeds=4)


def test_memory_per_million_humanoid_transitions():
    # Humanoid-v4: 376-dim observations, 17-dim actions -> about 3.1 GB per 1M transitions.
    assert 2.9e9 < replay_bytes(376, 17, 1_000_000) < 3.2e9


def _episodes(
    replay: Replay, lengths: list[int], ends_by: str = "terminated", going_on: bool = False
) -> Replay:
    """Episodes of the given lengths; step t of the whole stream has reward t and obs t.
    With ``going_on`` the last episode has not ended yet."""
    t = 0
    for number, length in enumerate(lengths):
        for i in range(length):
            last = i == length - 1 and not (going_on and number == len(lengths) - 1)
            terminated = last and ends_by == "terminated"
            obs, next_obs = np.full(3, t, np.float32), np.full(3, t + 1, np.float32)
            replay = _add(replay, obs, np.zeros(2), float(t), next_obs, terminated, last)
            t += 1
    return replay


def _every_row(replay: Replay, n_step: int):
    """An n-step sample of many rows, sorted by the row's first step."""
    batch = _sample(replay, (2000,), n_step, GAMMA)
    _, first = np.unique(batch.obs[:, 0], return_index=True)
    return type(batch)(*(column[first] for column in batch))


def test_n_step_sums_discounted_rewards_within_an_episode():
    replay = _episodes(create_replay(3, 2, capacity=100), [10])
    batch = _every_row(replay, 3)
    assert len(batch.obs) == 10
    start = batch.obs[:7, 0]  # rows with three steps left before the episode's end
    np.testing.assert_array_equal(batch.horizon[:7], 3.0)
    expected = start + GAMMA * (start + 1) + GAMMA**2 * (start + 2)
    np.testing.assert_allclose(batch.reward[:7], expected)
    np.testing.assert_array_equal(batch.next_obs[:7, 0], start + 3)
    np.testing.assert_array_equal(batch.terminated[:7], 0.0)


@pytest.mark.parametrize("ends_by", ["terminated", "truncated"])
def test_n_step_stops_at_the_end_of_an_episode(ends_by):
    replay = _episodes(create_replay(3, 2, capacity=100), [4, 6], ends_by)
    batch = _every_row(replay, 3)
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
    replay = _episodes(
        create_replay(3, 2, capacity=8), [11], going_on=True
    )  # an unfinished episode, steps 0-10; 3-10 kept
    np.testing.assert_array_equal(replay.cursor, 3)
    batch = _every_row(replay, 4)
    np.testing.assert_array_equal(batch.obs[:, 0], np.arange(3, 11))
    # The newest rows (steps 8, 9 and 10) have fewer than 4 steps written after them.
    np.testing.assert_array_equal(batch.horizon, [4, 4, 4, 4, 4, 3, 2, 1])
    np.testing.assert_array_equal(batch.next_obs[:, 0], [7, 8, 9, 10, 11, 11, 11, 11])


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_n_step_fraction_mixes_one_step_and_n_step_rows(fraction):
    replay = _episodes(create_replay(3, 2, capacity=100), [100], going_on=True)
    batch = _sample(replay, (4000,), 3, GAMMA, fraction)
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
    replay = _episodes(create_replay(3, 2, capacity=100), [5, 5])
    batch = _every_row(replay, 1)
    np.testing.assert_array_equal(batch.reward, batch.obs[:, 0])
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)
    np.testing.assert_array_equal(batch.horizon, 1.0)
    np.testing.assert_array_equal(batch.terminated, (batch.obs[:, 0] % 5 == 4).astype(np.float32))


def test_a_state_saved_without_episode_ends_gets_them_inferred():
    replay = _episodes(create_replay(3, 2, capacity=100), [4, 6], ends_by="truncated")
    state = replay_state(replay)
    old_state = {name: values for name, values in state.items() if name != "episode_end"}
    # A reset observation never continues the previous episode's last one.
    old_state["obs"] = old_state["obs"].copy()
    old_state["obs"][4] = -1.0
    restored = load_replay(create_replay(3, 2, capacity=100), old_state)
    expected = state["episode_end"].copy()
    expected[-1] = 1.0  # the newest row: whether its episode goes on is unknown
    np.testing.assert_array_equal(restored.rows.episode_end[:10], expected)
    round_trip = load_replay(create_replay(3, 2, capacity=100), state)
    np.testing.assert_array_equal(round_trip.rows.episode_end[:10], state["episode_end"])
