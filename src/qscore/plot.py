"""Learning curves: evaluation return against environment steps, mean over seeds with a
95% bootstrap confidence band, one panel per environment (needs ``qscore[viz]``)."""

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
