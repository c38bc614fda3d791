"""Figures (need ``qscore[viz]``).

* Learning curves: evaluation return against environment steps, mean over seeds with a
  95% bootstrap confidence band, one panel per environment (:func:`plot_curves`).
* The multimodal demo's figures (:mod:`qscore.demo`): action samples over the bandit's
  reward contours during training (:func:`plot_contours`) and the final action
  distributions with their share per peak (:func:`plot_final_actions`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from qscore.errors import ConfigError
from qscore.results import Curve, group_curves

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
COLUMNS = 3
"""Panels per row, at most."""


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display), or a ConfigError to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ConfigError('plotting needs matplotlib: pip install "qscore[viz]"') from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write ``figure`` to the PNG ``path`` atomically (parent folders created) and close it."""
    from qscore.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(figure)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def common_grid(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, returns of shape seeds x steps): every seed's curve on one grid of steps.

    The grid is the union of all seeds' evaluation steps within the range every seed
    covers (from the latest first evaluation to the earliest last one); each seed's
    returns are linearly interpolated onto it (``np.interp``). Seeds evaluated at the same
    steps are thus used as they are, and no seed is extrapolated.
    """
    start = max(int(c.steps[0]) for c in curves)
    stop = min(int(c.steps[-1]) for c in curves)
    if start > stop:
        c = curves[0]
        raise ConfigError(
            f"the seeds of {c.label} on {c.env_id} share no range of steps to average over"
        )
    grid = np.unique(np.concatenate([c.steps for c in curves]))
    grid = grid[(grid >= start) & (grid <= stop)]
    values = np.stack([np.interp(grid, c.steps, c.returns) for c in curves])
    return grid, values


def bootstrap_band(
    values: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of the mean over seeds (axis 0) at each
    step: seeds are resampled with replacement ``resamples`` times."""
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.arange(resamples)[:, None], picks), 1.0 / n)
    means = weights @ values  # (resamples, steps): the mean of each resample
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return low, high


def label_colors(labels: list[str]) -> dict[str, Any]:
    """One colour per label, the same in every panel."""
    palette = [f"C{i}" for i in range(10)]
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def plot_curves(
    curves: list[Curve], out: Path, title: str | None = None, ylabel: str = "evaluation return"
) -> Path:
    """Write the learning curves of ``curves`` to the PNG ``out`` (150 dpi); returns ``out``.

    One panel per environment (up to 3 per row, axes not shared), one line per label: the
    mean over seeds of the evaluation return, on the grid of :func:`common_grid` (seeds
    evaluated at different steps are interpolated onto their shared range), with a shaded
    95% percentile-bootstrap band of that mean (no band for a single seed).
    """
    if not curves:
        raise ConfigError("no logged values to plot")
    plt = pyplot()
    groups = group_curves(curves)
    colors = label_colors([c.label for c in curves])
    columns = min(COLUMNS, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.8 * rows), squeeze=False)
    for ax, (env_id, by_label) in zip(axes.flat, groups.items(), strict=False):
        for label, runs in by_label.items():
            steps, values = common_grid(runs)
            color = colors[label]
            seeds = len(runs)
            name = f"{label} ({seeds} seed{'s' if seeds != 1 else ''})"
            marker = "o" if len(steps) == 1 else None  # a lone point needs a marker to show
            ax.plot(
                steps, values.mean(axis=0), color=color, label=name, linewidth=1.6, marker=marker
            )
            if seeds > 1:
                low, high = bootstrap_band(values)
                ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, out)


# --- the multimodal demo (qscore.demo) ---------------------------------------------------


def _reward_grid(peaks: np.ndarray, points: int = 201) -> tuple[np.ndarray, ...]:
    """(x, y, reward) on a ``points`` x ``points`` grid of the action box [-1, 1]^2."""
    from qscore.bandit import DEFAULT_WIDTH, bump_reward  # here: it imports Gymnasium

    xs = np.linspace(-1.0, 1.0, points)
    grid_x, grid_y = np.meshgrid(xs, xs)
    reward = bump_reward(np.stack([grid_x, grid_y], axis=-1), peaks, DEFAULT_WIDTH)
    return grid_x, grid_y, reward


def _square_axes(ax: Any) -> None:
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(-1.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])


def plot_contours(
    samples: dict[str, list[tuple[int, np.ndarray]]], peaks: np.ndarray, out: str | Path
) -> Path:
    """Reward contours with each algorithm's action samples at each snapshot step: one row
    per algorithm, one column per step (the untrained agent first). Returns ``out``."""
    plt = pyplot()
    grid_x, grid_y, reward = _reward_grid(peaks)
    rows = len(samples)
    columns = max(len(snapshots) for snapshots in samples.values())
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.75 * rows), squeeze=False)
    for row, (algo, snapshots) in zip(axes, samples.items(), strict=True):
        for ax, (step, actions) in zip(row, snapshots, strict=False):
            ax.contourf(grid_x, grid_y, reward, levels=12, cmap="Greys", alpha=0.6)
            ax.scatter(actions[:, 0], actions[:, 1], s=3, alpha=0.35, color="C0", linewidths=0)
            ax.scatter(peaks[:, 0], peaks[:, 1], marker="x", color="C3", s=30)
            ax.set_title(f"{algo.upper()}, step {step}", fontsize="medium")
            _square_axes(ax)
        for ax in row[len(snapshots) :]:
            ax.set_visible(False)
    figure.suptitle("action samples over training (reward contours in grey, peaks x)")
    figure.tight_layout()
    return save_png(figure, out)


def _final_histogram(
    ax: Any, actions: np.ndarray, shares: list[float], peaks: np.ndarray, title: str
) -> None:
    """The 2-D histogram of ``actions`` over the reward contours, each peak labelled with
    its share of the samples."""
    from matplotlib.colors import LogNorm

    grid_x, grid_y, reward = _reward_grid(peaks)
    bins = np.linspace(-1.0, 1.0, 41)
    ax.hist2d(
        actions[:, 0], actions[:, 1], bins=[bins, bins], cmap="Blues", norm=LogNorm()
    )  # a log scale, so that a pile of samples at the box's edge hides no cluster
    ax.contour(grid_x, grid_y, reward, levels=6, colors="grey", linewidths=0.6)
    for peak, share in zip(peaks, shares, strict=True):
        ax.scatter([peak[0]], [peak[1]], marker="x", color="C3", s=30)
        ax.annotate(
            f"{100 * share:.0f}%", peak, textcoords="offset points", xytext=(6, 6),
            color="C3", fontsize="small",
        )  # fmt: skip
    ax.set_title(title, fontsize="medium")
    _square_axes(ax)


def _share_bars(ax: Any, modes: dict[str, Any], peaks: np.ndarray) -> None:
    """Per peak and algorithm: the share of samples nearest the peak (light) and within
    the near radius of it (solid); the dotted line is an even spread."""
    algos = list(modes)
    width = 0.8 / len(algos)
    positions = np.arange(len(peaks))
    for i, algo in enumerate(algos):
        where = positions + (i - (len(algos) - 1) / 2) * width
        name, color = algo.upper(), f"C{i}"
        ax.bar(where, modes[algo]["share_per_peak"], width, color=color, alpha=0.35,
               label=f"{name}: nearest the peak")  # fmt: skip
        ax.bar(where, modes[algo]["share_near_peak"], width, color=color,
               label=f"{name}: within {modes[algo]['near_radius']} of it")  # fmt: skip
    ax.axhline(1.0 / len(peaks), color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(positions, [f"({p[0]:+.1f},\n{p[1]:+.1f})" for p in peaks])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("share of final samples")
    ax.set_xlabel("peak")
    ax.legend(fontsize="small")


def plot_final_actions(
    samples: dict[str, list[tuple[int, np.ndarray]]],
    modes: dict[str, Any],
    peaks: np.ndarray,
    out: str | Path,
    titles: dict[str, str] | None = None,
) -> Path:
    """The final action distribution of each algorithm (2-D histogram over the reward
    contours, each peak labelled with the share of samples nearest to it; ``titles`` names
    the algorithms, default their keys) and a bar chart of those shares (light) and of the
    shares within the near radius (solid). Returns ``out``."""
    plt = pyplot()
    titles = titles or {}
    algos = list(samples)
    figure, axes = plt.subplots(1, len(algos) + 1, figsize=(4.2 * (len(algos) + 1), 4.0))
    for ax, algo in zip(axes, algos, strict=False):
        step, actions = samples[algo][-1]
        title = f"{titles.get(algo, algo)}, step {step}"
        _final_histogram(ax, actions, modes[algo]["share_per_peak"], peaks, title)
    _share_bars(axes[-1], {algo: modes[algo] for algo in algos}, peaks)
    num = len(samples[algos[0]][-1][1])
    figure.suptitle(f"final action distribution ({num} samples per algorithm)")
    figure.tight_layout()
    return save_png(figure, out)
