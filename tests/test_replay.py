import numpy as np
import pytest

from qscore.replay import ReplayBuffer, replay_bytes


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
