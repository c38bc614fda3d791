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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TaskResult:
    """The final evaluations of one label on one task."""

    env_id: str
    label: str
    seeds: int
    step: str
    """The step of the final evaluations, or ``FIRST-LAST`` when the seeds differ."""
    mean: float
    std: float
    """Sample standard deviation over seeds; NaN for one seed."""
    normalized: float
    """:data:`qscore.normalizers.NORMALIZERS` applied to ``mean``; NaN without a normalizer."""


@dataclass(frozen=True)
class ResultsTable:
    """Everything a results table shows, computed by :func:`compute_table`, before any
    formatting: per-task finals, normalized aggregates per label (as
    :func:`normalized_aggregates`), probabilities of improvement (as
    :func:`improvement_probabilities`) and the notes that qualify them."""

    budget: int | None
    reps: int
    per_task: list[TaskResult]
    aggregates: dict[str, dict[str, Any]]
    improvements: list[dict[str, Any]]
    notes: list[str]


def task_result(env_id: str, label: str, rows: list[tuple[int, int, float]]) -> TaskResult:
    """The :class:`TaskResult` of ``rows``, the ``(seed, step, return)`` of each seed's final
    evaluation (see :func:`final_evaluations`)."""
    values = np.array([value for _, _, value in rows])
    steps = sorted({step for _, step, _ in rows})
    mean = float(values.mean())
    return TaskResult(
        env_id=env_id,
        label=label,
        seeds=len(values),
        step=str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}",
        mean=mean,
        std=float(values.std(ddof=1)) if len(values) > 1 else math.nan,
        normalized=NORMALIZERS[env_id](mean) if env_id in NORMALIZERS else math.nan,
    )


def compute_table(
    curves: list[Curve],
    budget: int | None = None,
    reps: int | None = None,
    seed: int = BOOTSTRAP_SEED,
) -> ResultsTable:
    """The figures of the results table of ``curves`` (see :func:`make_table`); ``reps``
    bootstrap resamples make each confidence interval (default :data:`REPS`)."""
    reps = REPS if reps is None else reps
    if budget is not None and budget < 0:
        raise ConfigError("--budget must be >= 0")
    finals = final_evaluations(curves, budget)
    if not finals:
        where = "" if budget is None else f" at or before step {budget}"
        raise ConfigError(f"no evaluations{where} to tabulate")
    scores = {key: [value for _, _, value in rows] for key, rows in finals.items()}
    aggregates = normalized_aggregates(scores, reps, seed)
    return ResultsTable(
        budget=budget,
        reps=reps,
        per_task=[task_result(env_id, label, rows) for (env_id, label), rows in finals.items()],
        aggregates=aggregates,
        improvements=improvement_probabilities(scores, reps, seed),
        notes=table_notes(curves, finals, aggregates, budget, reps),
    )


TASK_HEADER = ["env", "label", "seeds", "step", "mean", "std", "normalized"]
AGGREGATE_CSV_HEADER = [
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
IMPROVEMENT_CSV_HEADER = ["x", "y", "tasks", "runs_x", "runs_y", "p_x_better", "ci_low", "ci_high"]


def render_markdown(table: ResultsTable) -> str:
    """``table`` as Markdown: a heading and a table per part, then the notes."""
    budget = table.budget
    when = "last evaluation" if budget is None else f"last evaluation at step <= {budget}"
    per_task = [
        [r.env_id, r.label, str(r.seeds), r.step]
        + [_num(r.mean, 1), _num(r.std, 1), _num(r.normalized, 3)]
        for r in table.per_task
    ]
    parts = [f"### Final evaluation return ({when})", _markdown(TASK_HEADER, per_task, 2)]
    if table.aggregates:
        rows = [
            [label, str(len(agg["tasks"])), str(agg["runs"])]
            + [_with_ci(agg["mean"]), _with_ci(agg["iqm"])]
            for label, agg in table.aggregates.items()
        ]
        header = ["label", "tasks", "runs per task", "mean", "IQM"]
        parts += [
            "### Normalized score across tasks (95% stratified bootstrap CIs)",
            _markdown(header, rows, numeric_from=1),
        ]
    if table.improvements:
        rows = [
            [row["x"], row["y"], str(len(row["tasks"])), f"{row['runs'][0]} vs {row['runs'][1]}"]
            + [_with_ci(row["probability"])]
            for row in table.improvements
        ]
        parts += [
            "### Probability of improvement P(X > Y) (95% CIs)",
            _markdown(["X", "Y", "tasks", "runs", "P(X > Y)"], rows, numeric_from=2),
        ]
    parts.append(render_notes(table.notes, "md"))
    return "\n\n".join(parts) + "\n"


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.10g}"


def render_csv(table: ResultsTable) -> str:
    """``table`` as CSV: each part with a header row, separated by blank lines, then the
    notes; numbers to 10 significant digits, an empty cell for a missing one."""
    per_task = [
        [r.env_id, r.label, r.seeds, r.step, f"{r.mean:.10g}"]
        + [_csv_number(r.std), _csv_number(r.normalized)]
        for r in table.per_task
    ]
    parts = [_csv(TASK_HEADER, per_task)]
    if table.aggregates:
        rows = [
            [label, len(agg["tasks"]), agg["runs"]]
            + [f"{v:.10g}" for v in (*agg["mean"], *agg["iqm"])]
            for label, agg in table.aggregates.items()
        ]
        parts.append(_csv(AGGREGATE_CSV_HEADER, rows))
    if table.improvements:
        rows = [
            [row["x"], row["y"], len(row["tasks"]), *row["runs"]]
            + [f"{v:.10g}" for v in row["probability"]]
            for row in table.improvements
        ]
        parts.append(_csv(IMPROVEMENT_CSV_HEADER, rows))
    parts.append(render_notes(table.notes, "csv"))
    return "\n\n".join(parts) + "\n"


def render_notes(notes: list[str], fmt: str) -> str:
    """The notes as a Markdown list under ``Notes:`` (``fmt="md"``) or a one-column CSV
    table (``fmt="csv"``)."""
    if fmt == "md":
        return "Notes:\n\n" + "\n".join(f"- {note}" for note in notes)
    return _csv(["note"], [[note] for note in notes])


RENDERERS = {"md": render_markdown, "csv": render_csv}
"""The table formats of :func:`make_table`, by name."""


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
    resamples make each confidence interval (default :data:`REPS`). The figures come from
    :func:`compute_table`, the text from :func:`render_markdown` or :func:`render_csv`.
    """
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown table format {fmt!r}; choose md or csv")
    return RENDERERS[fmt](compute_table(curves, budget, reps, seed))


def table_notes(
    curves: list[Curve],
    finals: dict[tuple[str, str], list[tuple[int, int, float]]],
    aggregates: dict[str, dict[str, Any]],
    budget: int | None,
    reps: int,
) -> list[str]:
    """The notes under a results table: what its figures are, and which runs, tasks or
    labels they leave out or cannot compare."""
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
