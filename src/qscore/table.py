"""Results tables: final returns per task, and aggregates across tasks with rliable.

The aggregates follow Agarwal et al. (2021), "Deep RL at the edge of the statistical
precipice", as implemented by ``rliable`` (needs ``qscore[viz]``):

* normalized scores (:mod:`qscore.normalizers`) form a runs x tasks matrix per label;
* the mean normalized score (mean over tasks of the mean over runs,
  ``metrics.aggregate_mean``) and the interquartile mean (``metrics.aggregate_iqm``, the
  mean of the middle 50% of all runs x tasks scores), each with a 95% stratified
  bootstrap confidence interval (``library.get_interval_estimates``, percentile method);
* the probability of improvement of each label over each other one
  (``metrics.probability_of_improvement``: P(a run of X beats a run of Y on a task),
  averaged over tasks) with a 95% stratified independent bootstrap interval.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from typing import Any

import numpy as np

from qscore.errors import ConfigError
from qscore.normalizers import NORMALIZERS
from qscore.results import Curve, group_curves

REPS = 2000
"""Bootstrap resamples of the confidence intervals."""
BOOTSTRAP_SEED = 0


def rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``, or a ConfigError saying how to install them."""
    try:
        from rliable import library, metrics
    except ImportError as error:
        raise ConfigError('tables need rliable: pip install "qscore[viz]"') from error
    return library, metrics


def interval_estimates(
    library: Any, scores: dict[str, Any], func: Any, reps: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``library.get_interval_estimates`` with a seeded RandomState (arch's FutureWarning
    about passing one, raised inside rliable, is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
        return library.get_interval_estimates(
            scores, func, reps=reps, random_state=np.random.RandomState(seed)
        )


def final_evaluations(
    curves: list[Curve], budget: int | None = None
) -> dict[tuple[str, str], list[tuple[int, int, float]]]:
    """``(seed, step, return)`` of each run's final evaluation, by (env, label), by seed.

    The final evaluation is the last one at a step <= ``budget`` (the last one when
    ``budget`` is None); a run with no evaluation at or below the budget is left out.
    """
    finals: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    for env_id, by_label in group_curves(curves).items():
        for label, runs in by_label.items():
            rows = []
            for curve in runs:
                keep = np.ones(len(curve.steps), bool) if budget is None else curve.steps <= budget
                if keep.any():
                    i = int(np.flatnonzero(keep)[-1])
                    rows.append((curve.seed, int(curve.steps[i]), float(curve.returns[i])))
            if rows:
                finals[(env_id, label)] = rows
    return finals


def final_scores(
    curves: list[Curve], budget: int | None = None
) -> dict[tuple[str, str], list[float]]:
    """The final return of every run, by (env, label), in seed order (see
    :func:`final_evaluations` for which evaluation is final)."""
    return {
        key: [value for _, _, value in rows]
        for key, rows in final_evaluations(curves, budget).items()
    }


def score_matrix(
    scores: dict[tuple[str, str], list[float]], label: str, tasks: list[str]
) -> np.ndarray:
    """runs x tasks matrix of ``label``'s scores; each task keeps its first (lowest-seed)
    ``n`` runs, ``n`` the fewest runs of any of the tasks (rliable needs a rectangle)."""
    runs = min(len(scores[(task, label)]) for task in tasks)
    return np.array([scores[(task, label)][:runs] for task in tasks], dtype=np.float64).T


def normalized_aggregates(
    scores: dict[tuple[str, str], list[float]], reps: int = REPS, seed: int = BOOTSTRAP_SEED
) -> dict[str, dict[str, Any]]:
    """Per label: its normalized tasks, runs per task, and mean and IQM with 95% CIs.

    Only tasks with a normalizer count. ``mean`` and ``iqm`` are ``(point, low, high)``.
    """
    library, metrics = rliable()
    labels = sorted({label for _, label in scores})
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        tasks = sorted(env for env, lab in scores if lab == label and env in NORMALIZERS)
        if not tasks:
            continue
        raw = score_matrix(scores, label, tasks)
        matrix = np.stack([NORMALIZERS[t](raw[:, j]) for j, t in enumerate(tasks)], axis=1)

        def aggregates(x: np.ndarray) -> np.ndarray:
            return np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)])

        points, intervals = interval_estimates(library, {label: matrix}, aggregates, reps, seed)
        point, interval = points[label], intervals[label]
        out[label] = {
            "tasks": tasks,
            "runs": matrix.shape[0],
            "matrix": matrix,
            "mean": (float(point[0]), float(interval[0, 0]), float(interval[1, 0])),
            "iqm": (float(point[1]), float(interval[0, 1]), float(interval[1, 1])),
        }
    return out


def improvement_probabilities(
    scores: dict[tuple[str, str], list[float]], reps: int = REPS, seed: int = BOOTSTRAP_SEED
) -> list[dict[str, Any]]:
    """P(X > Y) with a 95% CI for every ordered pair of labels sharing at least one task.

    Computed on the raw final returns of the tasks both labels ran: the per-task
    probability compares runs of one task only, so it needs no normalizer.
    """
    library, metrics = rliable()
    labels = sorted({label for _, label in scores})
    rows = []
    for x in labels:
        for y in labels:
            if x == y:
                continue
            tasks = sorted(env for env, lab in scores if lab == x and (env, y) in scores)
            if not tasks:
                continue
            pair = [score_matrix(scores, x, tasks), score_matrix(scores, y, tasks)]
            points, intervals = interval_estimates(
                library, {"pair": pair}, metrics.probability_of_improvement, reps, seed
            )
            interval = np.asarray(intervals["pair"]).reshape(-1)
            rows.append(
                {
                    "x": x,
                    "y": y,
                    "tasks": tasks,
                    "runs": (pair[0].shape[0], pair[1].shape[0]),
                    "probability": (
                        float(points["pair"]),
                        float(interval[0]),
                        float(interval[1]),
                    ),
                }
            )
    return rows


def _unequal_runs(scores: dict[tuple[str, str], list[float]]) -> list[str]:
    """Labels whose tasks have different numbers of runs."""
    counts: dict[str, set[int]] = {}
    for (_, label), values in scores.items():
        counts.setdefault(label, set()).add(len(values))
    return sorted(label for label, sizes in counts.items() if len(sizes) > 1)


def _num(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}"


def _with_ci(estimate: tuple[float, float, float], digits: int = 3) -> str:
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _markdown(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def make_table(
    curves: list[Curve],
    budget: int | None = None,
    fmt: str = "md",
    reps: int | None = None,
    seed: int = BOOTSTRAP_SEED,
) -> str:
    """The results of ``curves`` as Markdown (``fmt="md"``) or CSV (``fmt="csv"``).

    Tables: final return per task and label (seeds, step(s) of the final evaluations,
    mean, sample std over seeds, normalized mean when the task has a normalizer);
    normalized-score aggregates per label (mean and IQM with 95% CIs); probability of
    improvement of every label over every other one; notes. CSV gives the tables one
    after the other, each with a header row, separated by blank lines. ``reps`` bootstrap
    resamples make each confidence interval (default :data:`REPS`).
    """
    reps = REPS if reps is None else reps
    if fmt not in ("md", "csv"):
        raise ConfigError(f"unknown table format {fmt!r}; choose md or csv")
    if budget is not None and budget < 0:
        raise ConfigError("--budget must be >= 0")
    finals = final_evaluations(curves, budget)
    if not finals:
        where = "" if budget is None else f" at or before step {budget}"
        raise ConfigError(f"no evaluations{where} to tabulate")
    scores = {key: [value for _, _, value in rows] for key, rows in finals.items()}
    aggregates = normalized_aggregates(scores, reps, seed)
    improvements = improvement_probabilities(scores, reps, seed)
    md = fmt == "md"

    per_task_header = ["env", "label", "seeds", "step", "mean", "std", "normalized"]
    per_task = []
    for (env_id, label), rows in finals.items():
        values = np.array([value for _, _, value in rows])
        steps = sorted({step for _, step, _ in rows})
        step = str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
        std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        mean = float(values.mean())
        norm = NORMALIZERS[env_id](mean) if env_id in NORMALIZERS else math.nan
        if md:
            per_task.append(
                [env_id, label, str(len(values)), step, _num(mean, 1), _num(std, 1), _num(norm, 3)]
            )
        else:
            per_task.append(
                [
                    env_id,
                    label,
                    len(values),
                    step,
                    f"{mean:.10g}",
                    "" if math.isnan(std) else f"{std:.10g}",
                    "" if math.isnan(norm) else f"{norm:.10g}",
                ]
            )

    aggregate_rows = []
    for label, agg in aggregates.items():
        if md:
            aggregate_rows.append(
                [
                    label,
                    str(len(agg["tasks"])),
                    str(agg["runs"]),
                    _with_ci(agg["mean"]),
                    _with_ci(agg["iqm"]),
                ]
            )
        else:
            aggregate_rows.append(
                [
                    label,
                    len(agg["tasks"]),
                    agg["runs"],
                    *(f"{v:.10g}" for v in agg["mean"]),
                    *(f"{v:.10g}" for v in agg["iqm"]),
                ]
            )

    poi_rows = []
    for row in improvements:
        runs = f"{row['runs'][0]} vs {row['runs'][1]}"
        if md:
            poi_rows.append(
                [row["x"], row["y"], str(len(row["tasks"])), runs, _with_ci(row["probability"])]
            )
        else:
            poi_rows.append(
                [
                    row["x"],
                    row["y"],
                    len(row["tasks"]),
                    *row["runs"],
                    *(f"{v:.10g}" for v in row["probability"]),
                ]
            )

    notes = _notes(curves, finals, aggregates, budget, reps)
    when = "last evaluation" if budget is None else f"last evaluation at step <= {budget}"
    if md:
        parts = [
            f"### Final evaluation return ({when})",
            _markdown(per_task_header, per_task, numeric_from=2),
        ]
        if aggregate_rows:
            parts += [
                "### Normalized score across tasks (95% stratified bootstrap CIs)",
                _markdown(
                    ["label", "tasks", "runs per task", "mean", "IQM"],
                    aggregate_rows,
                    numeric_from=1,
                ),
            ]
        if poi_rows:
            parts += [
                "### Probability of improvement P(X > Y) (95% CIs)",
                _markdown(["X", "Y", "tasks", "runs", "P(X > Y)"], poi_rows, numeric_from=2),
            ]
        parts.append("Notes:\n\n" + "\n".join(f"- {note}" for note in notes))
        return "\n\n".join(parts) + "\n"
    parts = [_csv(per_task_header, per_task)]
    if aggregate_rows:
        header = [
            "label",
            "tasks",
            "runs_per_task",
            "mean_normalized",
            "mean_ci_low",
            "mean_ci_high",
            "iqm",
            "iqm_ci_low",
            "iqm_ci_high",
        ]
        parts.append(_csv(header, aggregate_rows))
    if poi_rows:
        header = ["x", "y", "tasks", "runs_x", "runs_y", "p_x_better", "ci_low", "ci_high"]
        parts.append(_csv(header, poi_rows))
    parts.append(_csv(["note"], [[note] for note in notes]))
    return "\n\n".join(parts) + "\n"


def _notes(
    curves: list[Curve],
    finals: dict[tuple[str, str], list[tuple[int, int, float]]],
    aggregates: dict[str, dict[str, Any]],
    budget: int | None,
    reps: int,
) -> list[str]:
    scores = {key: [value for _, _, value in rows] for key, rows in finals.items()}
    notes = [
        "std is the sample standard deviation over seeds (empty for one seed); normalized "
        "= (return - random) / (reference - random), see qscore.normalizers.",
        f"Confidence intervals: percentile bootstrap, {reps} resamples (rliable).",
        "Probability of improvement compares raw final returns on the tasks both labels "
        "ran (it needs no normalizer).",
    ]
    if budget is not None:
        kept = sum(len(rows) for rows in finals.values())
        if kept < len(curves):
            notes.append(
                f"{len(curves) - kept} run(s) with no evaluation at or before step {budget} "
                "are left out."
            )
    unnormalized = sorted({env for env, _ in finals if env not in NORMALIZERS})
    if unnormalized:
        notes.append(
            "No normalizer (left out of the normalized aggregates): "
            + ", ".join(unnormalized)
            + "."
        )
    unequal = _unequal_runs(scores)
    if unequal:
        notes.append(
            "Tasks with different numbers of seeds for "
            + ", ".join(unequal)
            + ": the aggregates use the first (lowest) seeds, as many as the task with the "
            "fewest has."
        )
    task_sets = {tuple(agg["tasks"]) for agg in aggregates.values()}
    if len(task_sets) > 1:
        notes.append("The labels cover different tasks: their aggregates are not comparable.")
    return notes
