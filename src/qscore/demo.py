"""``qscore demo multimodal``: QSM and SAC on a bandit whose best actions form separate modes.

Both algorithms are trained by the ordinary loop (:func:`qscore.training.train`) on
:class:`qscore.bandit.MultimodalBandit` (four equal peaks by default, or two), each into its
own run directory ``OUT/qsm`` and ``OUT/sac`` with a checkpoint at every quarter of
training. Many actions are then sampled from the policy of every checkpoint (and of the
untrained agent, step 0) and the demo writes

* ``contours.png``: the reward's contours with the action samples at each of those steps,
  one row per algorithm;
* ``final_actions.png``: the final action distribution of each algorithm (a 2-D histogram
  over the reward contours) and the share of its samples nearest to each peak;
* ``modes.json``: per algorithm, the peaks, ``share_per_peak`` (the share of the final
  samples nearest to each peak), ``share_near_peak`` (the share within ``near_radius`` of
  each peak), their sum ``share_near_any``, the samples' ``mean_reward``, the same shares
  at every earlier checkpoint (``over_training``) and the run directory (``run_dir``, whose
  ``config.json`` holds the full config).

What is sampled: for QSM one full reverse-chain sample per action (``explore=False``: the
policy itself, without the exploration noise added while collecting data); for SAC a
sample of its tanh-Gaussian policy (``explore=True``), since SAC's ``explore=False`` action
is the deterministic tanh(mu), a single point whatever the policy learned.

Settings that differ from the library's defaults, and why (see :data:`DEMO_AGENT`): the
bandit's rewards are at most about 1, not the hundreds of a MuJoCo return, so QSM's
Q-score scale alpha is 1 instead of 50 (a larger alpha makes the reverse chain overshoot
the peaks to the corners of the box), SAC's entropy temperature starts at 0.05 instead of 1
(at 1 the entropy bonus outweighs the reward and the policy stays spread out for thousands
of steps; it is then tuned as usual), and QSM runs T = 10 reverse steps instead of 5 (with
5 large steps the last ones add noise the chain cannot remove). Both use 2x64 networks,
batches of 128, two updates per step (``utd``) and a critic learning rate of 1e-3; the
actor's is 3e-3 (constant) for QSM and 1e-3 for SAC. Most of the demo's time is XLA
compilation: about 35 s of CPU time in all with the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from qscore.agents import get_algorithm
from qscore.atomic import atomic_write_json
from qscore.bandit import DEFAULT_WIDTH, OBS_DIM, bandit_env_id, bump_reward, default_peaks
from qscore.checkpoint import list_checkpoints, load_agent
from qscore.config import RunConfig, make_config
from qscore.errors import ConfigError
from qscore.plot import plot_contours, plot_final_actions, pyplot
from qscore.rundir import check_run_dir
from qscore.training import train

DEMOS = ("multimodal",)
"""Names accepted by ``qscore demo``."""
ALGOS = ("qsm", "sac")
"""The algorithms the multimodal demo trains, in the order of the figures' rows."""
ALGO_TITLES = {"qsm": "QSM (diffusion policy)", "sac": "SAC (Gaussian policy)"}
DEFAULT_STEPS = 2000
DEFAULT_SAMPLES = 1000
MIN_STEPS = 100
SNAPSHOTS = 4
"""Checkpoints written during training (at every quarter of it), each shown in the figure."""
NEAR_RADIUS = 0.3
"""A sample is near a peak when within this distance of it (the peaks are 1 apart or more)."""
SAMPLE_KEY_OFFSET = 7
"""The action samples' key is PRNGKey(seed) folded with this, the same for every snapshot."""

DEMO_AGENT: dict[str, dict[str, Any]] = {
    "qsm": {
        "actor_hidden": (64, 64),
        "critic_hidden": (64, 64),
        "time_features": 16,
        "time_hidden": (32, 32),
        "num_diffusion_steps": 10,
        "q_score_target": "scaled",
        "q_score_scale": 1.0,
        "actor_lr": 3e-3,
        "actor_lr_decay_steps": 0,
        "critic_lr": 1e-3,
        "batch_size": 128,
        "utd": 2,
    },
    "sac": {
        "actor_hidden": (64, 64),
        "critic_hidden": (64, 64),
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "init_temperature": 0.05,
        "batch_size": 128,
        "utd": 2,
    },
}
"""Learner settings of the demo, over each algorithm's ``paper`` preset (see above)."""


def demo_config(algo: str, steps: int, seed: int, num_peaks: int = 4) -> RunConfig:
    """The run config of ``algo`` in the multimodal demo: ``steps`` steps on the bandit with
    ``num_peaks`` peaks, a checkpoint every ``steps // 4`` and one evaluation at the end."""
    if algo not in DEMO_AGENT:
        raise ConfigError(f"the multimodal demo trains {', '.join(ALGOS)}, not {algo!r}")
    if steps < MIN_STEPS:
        raise ConfigError(f"--steps must be at least {MIN_STEPS}, got {steps}")
    train_fields = {
        "env_id": bandit_env_id(num_peaks),
        "seed": seed,
        "total_steps": steps,
        "warmup_steps": min(500, steps // 5),
        "eval_every": 0,
        "eval_episodes": 10,
        "checkpoint_every": steps // SNAPSHOTS,
        "log_every": max(1, steps // 20),
    }
    return make_config("paper", DEMO_AGENT[algo], train_fields, algo)


def sample_actions(agent: Any, num: int, key: jax.Array, explore: bool) -> np.ndarray:
    """``num`` actions of shape (num, action_dim) from ``agent.policy`` at the bandit's
    observation, one independent key each (vmapped, so one compiled call)."""
    obs = np.zeros(OBS_DIM, np.float32)
    keys = jax.random.split(key, num)
    actions, _ = jax.vmap(lambda k: agent.policy(obs, k, explore))(keys)
    return np.asarray(actions, np.float64)


def mode_shares(
    samples: np.ndarray, peaks: np.ndarray, radius: float = NEAR_RADIUS
) -> dict[str, Any]:
    """How ``samples`` (N, 2) spread over ``peaks`` (K, 2).

    ``share_per_peak[k]``: the share of samples nearer to peak k than to any other (the K
    shares sum to 1, so they say which peaks the mass leans to, not whether it is on them);
    ``share_near_peak[k]``: the share within ``radius`` of peak k; ``share_near_any``: their
    sum; ``max_share``: the largest of ``share_per_peak``.
    """
    samples = np.asarray(samples, np.float64).reshape(-1, 2)
    peaks = np.asarray(peaks, np.float64)
    distances = np.linalg.norm(samples[:, None, :] - peaks[None], axis=-1)
    nearest = distances.argmin(axis=1)
    count = max(len(samples), 1)
    per_peak = np.bincount(nearest, minlength=len(peaks)) / count
    is_near = distances.min(axis=1) <= radius
    near = np.bincount(nearest[is_near], minlength=len(peaks)) / count
    return {
        "share_per_peak": [round(float(s), 4) for s in per_peak],
        "share_near_peak": [round(float(s), 4) for s in near],
        "share_near_any": round(float(near.sum()), 4),
        "max_share": round(float(per_peak.max()), 4),
    }


def _snapshots(algo: str, config: RunConfig, run_dir: Path) -> list[tuple[int, Any]]:
    """(step, agent) of the untrained agent and of every checkpoint of ``run_dir``."""
    algorithm = get_algorithm(algo)
    template = algorithm.create(config.agent, OBS_DIM, 2, config.train.seed)
    agents = [(0, template)]
    for checkpoint in list_checkpoints(run_dir):
        agent, step = load_agent(checkpoint, template)
        agents.append((step, agent))
    return agents


def algo_modes(
    algo: str,
    config: RunConfig,
    samples: list[tuple[int, np.ndarray]],
    peaks: np.ndarray,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The ``modes.json`` entry of ``algo`` (see the module docstring), from its action
    ``samples`` at each snapshot step (the last one final) and its training ``summary``."""
    final_step, final = samples[-1]
    return {
        "env_id": config.train.env_id,
        "seed": config.train.seed,
        "step": final_step,
        "peaks": peaks.tolist(),
        "near_radius": NEAR_RADIUS,
        "num_samples": len(final),
        "explore": algo == "sac",
        **mode_shares(final, peaks),
        "mean_reward": round(float(bump_reward(final, peaks, DEFAULT_WIDTH).mean()), 4),
        "final_eval_return": summary["final_eval"]["return_mean"],
        "over_training": [
            {"step": step, **mode_shares(actions, peaks)} for step, actions in samples
        ],
        "run_dir": algo,
    }


def run_multimodal_demo(
    out_dir: str | Path,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    num_peaks: int = 4,
    num_samples: int = DEFAULT_SAMPLES,
    *,
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train QSM and SAC on the bandit with ``num_peaks`` (2 or 4) peaks and write the
    pictures and ``modes.json`` to ``out_dir`` (see the module docstring); returns the
    content of ``modes.json``. ``log`` (e.g. ``print``) receives a line per stage;
    ``plots=False`` skips the pictures (and matplotlib)."""
    out_dir = Path(out_dir)
    if num_samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {num_samples}")
    try:
        peaks = default_peaks(num_peaks)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    configs = {algo: demo_config(algo, steps, seed, num_peaks) for algo in ALGOS}
    for algo in ALGOS:  # refuse a used run directory before anything is trained
        check_run_dir(out_dir / algo, overwrite, "pass --overwrite or choose another --out")
    if plots:
        pyplot()  # a missing matplotlib fails before any training
    key = jax.random.fold_in(jax.random.PRNGKey(seed), SAMPLE_KEY_OFFSET)
    modes: dict[str, Any] = {}
    samples: dict[str, list[tuple[int, np.ndarray]]] = {}
    for algo, config in configs.items():
        if log:
            log(f"training {algo} on {config.train.env_id} for {steps} steps (seed {seed})")
        run_dir = out_dir / algo
        summary = train(config, run_dir, overwrite=overwrite, progress=progress)
        explore = algo == "sac"
        samples[algo] = [
            (step, sample_actions(agent, num_samples, key, explore))
            for step, agent in _snapshots(algo, config, run_dir)
        ]
        modes[algo] = algo_modes(algo, config, samples[algo], peaks, summary)
    atomic_write_json(out_dir / "modes.json", modes)
    if plots:
        plot_contours(samples, peaks, out_dir / "contours.png")
        plot_final_actions(samples, modes, peaks, out_dir / "final_actions.png", ALGO_TITLES)
    return modes


def format_shares(modes: dict[str, Any]) -> list[str]:
    """One line per algorithm: its share of samples nearest to each peak, the share near any
    peak and the samples' mean reward."""
    lines = []
    for algo, result in modes.items():
        shares = ", ".join(
            f"({p[0]:+.1f}, {p[1]:+.1f}) {s:.2f}"
            for p, s in zip(result["peaks"], result["share_per_peak"], strict=True)
        )
        lines.append(
            f"{algo}: share of {result['num_samples']} final samples nearest each peak: "
            f"{shares}; within {result['near_radius']} of a peak: "
            f"{result['share_near_any']:.2f}; mean reward {result['mean_reward']:.2f}"
        )
    return lines
