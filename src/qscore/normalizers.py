"""Per-task normalizers for the normalized score: 0 = a uniform-random policy, 1 = a reference.

``normalized = (return - random) / (reference - random)``. The random-policy returns were
measured with ``benchmarks/random_scores.py`` (20 episodes, seeds 0-19, actions uniform in
the action space). The references are published final returns of SAC from CleanRL's
benchmark (``sac_continuous_action.py``, Gym v4 MuJoCo tasks, 1M environment steps), the
maximum return for InvertedPendulum, and about the optimal return for Pendulum-v1. The v5
MuJoCo tasks reuse the v4 reference (their dynamics and rewards are close; no published
v5 number is used here) with their own measured random return.

A score above 1 means better than the reference, not "solved": the references are one
implementation's numbers, not upper bounds (except InvertedPendulum's).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Normalizer:
    """The 0 (``random``) and 1 (``reference``) points of one task's normalized score."""

    random: float
    """Mean return of a uniform-random policy."""
    reference: float
    """Return that scores 1."""
    reference_source: str
    """Where ``reference`` comes from."""
    random_source: str
    """Where ``random`` comes from."""

    def __call__(self, value: float) -> float:
        return (value - self.random) / (self.reference - self.random)


RANDOM_SOURCE = "benchmarks/random_scores.py, 20 episodes, seeds 0-19"
CLEANRL_SAC = "CleanRL SAC (sac_continuous_action.py), Gym v4, 1M steps"
CLEANRL_SAC_V4 = CLEANRL_SAC + "; the -v4 number, reused for -v5"
MAXIMUM = "maximum return (1000 steps balanced)"

NORMALIZERS: dict[str, Normalizer] = {
    "InvertedPendulum-v4": Normalizer(6.85, 1000.0, MAXIMUM, RANDOM_SOURCE),
    "HalfCheetah-v4": Normalizer(-289.266, 9635.0, CLEANRL_SAC, RANDOM_SOURCE),
    "Hopper-v4": Normalizer(17.509, 2310.0, CLEANRL_SAC, RANDOM_SOURCE),
    "Walker2d-v4": Normalizer(5.403, 3591.0, CLEANRL_SAC, RANDOM_SOURCE),
    "Humanoid-v4": Normalizer(120.864, 4996.0, CLEANRL_SAC, RANDOM_SOURCE),
    "InvertedPendulum-v5": Normalizer(5.85, 1000.0, MAXIMUM, RANDOM_SOURCE),
    "HalfCheetah-v5": Normalizer(-289.266, 9635.0, CLEANRL_SAC_V4, RANDOM_SOURCE),
    "Hopper-v5": Normalizer(16.509, 2310.0, CLEANRL_SAC_V4, RANDOM_SOURCE),
    "Walker2d-v5": Normalizer(3.706, 3591.0, CLEANRL_SAC_V4, RANDOM_SOURCE),
    "Humanoid-v5": Normalizer(112.829, 4996.0, CLEANRL_SAC_V4, RANDOM_SOURCE),
    "Pendulum-v1": Normalizer(-1178.922, -150.0, "approximately optimal", RANDOM_SOURCE),
}
"""Normalizers by environment id."""


def normalized(env_id: str, value: float) -> float:
    """``value`` (a return on ``env_id``) as a normalized score; KeyError for unknown tasks."""
    try:
        normalizer = NORMALIZERS[env_id]
    except KeyError:
        known = ", ".join(sorted(NORMALIZERS))
        raise KeyError(f"no normalizer for {env_id!r}; known tasks: {known}") from None
    return normalizer(value)
