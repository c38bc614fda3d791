"""Loading evaluation curves from run, multi-seed run and sweep directories (for plot, table).

Three layouts are recognised, by the file at their top:

* a run directory (``config.json``): one curve, labelled with its ``algo``;
* a multi-seed run directory (``seeds.json``): one curve per ``seed_S/`` subdirectory;
* a sweep directory (``sweep.json``): one curve per cell, labelled ``algo`` or
  ``algo-variant`` (:attr:`qscore.sweep.Cell.label`). A cell whose recorded ``run_dir``
  does not exist (the sweep was moved) is looked for at ``SWEEP_DIR/ENV/LABEL/seed_S``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qscore.errors import ConfigError
from qscore.logs import read_csv


@dataclass
class Curve:
    """The evaluation returns of one run (one seed of one label on one environment)."""

    env_id: str
    label: str
    seed: int
    steps: np.ndarray
    """Environment steps of the evaluations, increasing."""
    returns: np.ndarray
    """Mean evaluation return at each step (or the value of the metric loaded)."""
    run_dir: Path


RETURN = "return_mean"
"""The default metric: the mean evaluation return (eval.csv)."""


def metric_file(run_dir: Path, metric: str) -> Path:
    """The log holding ``metric``: eval.csv if its header names it, else train.csv."""
    for name in ("eval.csv", "train.csv"):
        path = run_dir / name
        if path.is_file():
            with path.open() as handle:
                if metric in handle.readline().strip().split(","):
                    return path
    return run_dir / ("eval.csv" if metric == RETURN else "train.csv")


def read_eval(run_dir: Path, metric: str = RETURN) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``metric`` in ``run_dir``'s eval.csv (or train.csv, for a training
    metric such as ``action_at_bound``), sorted by step; empty if none.

    Rows without a finite value are dropped; a step logged twice keeps its last row.
    """
    path = metric_file(run_dir, metric)
    by_step: dict[int, float] = {}
    if path.is_file():
        for row in read_csv(path):
            try:
                step, value = int(float(row["step"])), float(row[metric])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(value):
                by_step[step] = value
    steps = np.array(sorted(by_step), dtype=np.int64)
    returns = np.array([by_step[s] for s in steps.tolist()], dtype=np.float64)
    return steps, returns


def _read_config(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {run_dir / 'config.json'}: {error}") from error


def _run_curve(run_dir: Path, label: str | None = None) -> tuple[str, str, int, Path]:
    """(env_id, label, seed, run_dir) of a single run directory, from its config.json."""
    config = _read_config(run_dir)
    try:
        train = config["train"]
        return train["env_id"], label or config["algo"], int(train["seed"]), run_dir
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(
            f"{run_dir / 'config.json'} lacks algo, train.env_id or train.seed"
        ) from error


def _sweep_runs(sweep_dir: Path) -> list[tuple[str, str, int, Path]]:
    from qscore.rundir import cell_dir
    from qscore.sweep import sweep_cells

    try:
        cells = sweep_cells(sweep_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read {sweep_dir / 'sweep.json'}: {error}") from error
    runs = []
    for cell in cells:
        run_dir = Path(cell.run_dir)
        if not run_dir.is_dir():
            run_dir = cell_dir(sweep_dir, cell.env_id, cell.label, cell.seed)
        runs.append((cell.env_id, cell.label, cell.seed, run_dir))
    return runs


def _runs_of(path: Path) -> list[tuple[str, str, int, Path]]:
    """(env_id, label, seed, run_dir) of every run under ``path``, by its layout."""
    from qscore.rundir import CONFIG_FILE, SEEDS_FILE, SWEEP_FILE, run_seeds, seed_dirs

    if (path / SWEEP_FILE).is_file():
        return _sweep_runs(path)
    if (path / SEEDS_FILE).is_file():
        try:
            seeds = run_seeds(path)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"cannot read {path / SEEDS_FILE}: {error}") from error
        return [_run_curve(folder) for folder in seed_dirs(path, seeds)]
    if (path / CONFIG_FILE).is_file():
        return [_run_curve(path)]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    raise FileNotFoundError(
        f"{path} is not a run, multi-seed run or sweep directory "
        "(it has no config.json, seeds.json or sweep.json)"
    )


def load_curves(
    paths: list[Path | str],
    skipped: list[Path] | None = None,
    metric: str = RETURN,
    labels: list[str] | None = None,
) -> list[Curve]:
    """The evaluation curves (or curves of another logged ``metric``) of any mix of run,
    multi-seed run and sweep directories.

    A path written ``LABEL=DIR`` gives every run under DIR the label LABEL (a directory that
    exists under that very name is taken as it is). Runs without values (not started, or no
    row yet) are left out; their directories are appended to ``skipped`` when it is given.
    The same run reached twice under the same label (say, a sweep and one of its cells)
    counts once; two different runs with the same environment, label and seed are an error
    (they would be mistaken for one seed). With ``labels``, only curves of those labels are
    kept, and a label that no run has is an error.
    """
    curves: list[Curve] = []
    seen: dict[tuple[str, str, int], Path] = {}
    for path in paths:
        rename, path = labelled_path(path)
        for env_id, label, seed, run_dir in _runs_of(path):
            label = rename or label
            key = (env_id, label, seed)
            resolved = run_dir.resolve()
            if key in seen:
                if seen[key] == resolved:
                    continue
                raise ConfigError(
                    f"two runs of {label} on {env_id} with seed {seed}: {seen[key]} and "
                    f"{run_dir}; pass only one of them, or name one LABEL=DIR"
                )
            steps, returns = read_eval(run_dir, metric)
            if len(steps) == 0:
                if skipped is not None:
                    skipped.append(run_dir)
                continue
            seen[key] = resolved
            curves.append(Curve(env_id, label, seed, steps, returns, run_dir))
    return _with_labels(curves, labels) if labels else curves


def _with_labels(curves: list[Curve], labels: list[str]) -> list[Curve]:
    missing = sorted(set(labels) - {c.label for c in curves})
    if missing:
        raise ConfigError(f"no runs labelled {', '.join(missing)}")
    return [c for c in curves if c.label in labels]


def labelled_path(path: Path | str) -> tuple[str | None, Path]:
    """``LABEL=DIR`` -> (LABEL, DIR); anything else (including an existing directory whose
    name holds an "=") -> (None, the path)."""
    text = str(path)
    label, sep, rest = text.partition("=")
    if sep and label and rest and not Path(text).exists():
        return label, Path(rest)
    return None, Path(text)


def skipped_message(skipped: list[Path]) -> str:
    """One line naming the runs :func:`load_curves` left out."""
    shown = ", ".join(str(p) for p in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"qscore: warning: skipped {len(skipped)} run(s) with no evaluations: {shown}{more}"


def group_curves(curves: list[Curve]) -> dict[str, dict[str, list[Curve]]]:
    """Curves by environment, then label (both in sorted order), each list sorted by seed."""
    groups: dict[str, dict[str, list[Curve]]] = {}
    for curve in sorted(curves, key=lambda c: (c.env_id, c.label, c.seed)):
        groups.setdefault(curve.env_id, {}).setdefault(curve.label, []).append(curve)
    return groups
