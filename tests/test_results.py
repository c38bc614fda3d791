"""Loading results, learning-curve plots and results tables, on synthetic run directories."""

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rliable")

from qscore import table as table_module  # noqa: E402
from qscore.cli import main  # noqa: E402
from qscore.errors import ConfigError  # noqa: E402
from qscore.normalizers import NORMALIZERS, normalized  # noqa: E402
from qscore.plot import bootstrap_band, common_grid, plot_curves  # noqa: E402
from qscore.results import Curve, load_curves  # noqa: E402
from qscore.table import (  # noqa: E402
    final_scores,
    improvement_probabilities,
    make_table,
    normalized_aggregates,
)

REPS = 200  # bootstrap resamples in tests: enough for the checks, fast


def write_run(run_dir: Path, algo: str, env_id: str, seed: int, evals) -> Path:
    """A run directory with config.json and eval.csv rows ``(step, return_mean)``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "algo": algo,
        "preset": "fast",
        "agent": {},
        "train": {"env_id": env_id, "seed": seed, "total_steps": 1000},
        "versions": {},
        "git_commit": None,
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = ["step,return_mean,return_std,episodes,wall_time"]
    lines += [f"{step},{value},0.5,5,1.0" for step, value in evals]
    (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def write_multi(run_dir: Path, algo: str, env_id: str, evals_by_seed: dict) -> Path:
    for seed, evals in evals_by_seed.items():
        write_run(run_dir / f"seed_{seed}", algo, env_id, seed, evals)
    seeds = {"seeds": list(evals_by_seed), "algo": algo}
    (run_dir / "seeds.json").write_text(json.dumps(seeds))
    return run_dir


def write_sweep(sweep_dir: Path, cells, recorded_root: Path | None = None) -> Path:
    """A sweep directory; ``cells`` are ``(algo, variant, env_id, seed, evals or None)``.

    Run dirs are recorded under ``recorded_root`` (default: the sweep dir); ``None`` evals
    leave the cell without a run directory (not run yet).
    """
    recorded_root = recorded_root or sweep_dir
    records = []
    for algo, variant, env_id, seed, evals in cells:
        label = f"{algo}-{variant}" if variant else algo
        relative = Path(env_id.replace(":", "_")) / label / f"seed_{seed}"
        if evals is not None:
            write_run(sweep_dir / relative, algo, env_id, seed, evals)
        records.append(
            {
                "algo": algo,
                "env_id": env_id,
                "seed": seed,
                "variant": variant,
                "run_dir": str(recorded_root / relative),
                "preset": "fast",
                "agent": {},
                "train": {},
            }
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({"spec": {}, "cells": records}))
    return sweep_dir


def curve(env_id, label, seed, evals) -> Curve:
    steps, returns = zip(*evals, strict=True)
    return Curve(env_id, label, seed, np.array(steps), np.array(returns, float), Path("."))


def grid_sweep(tmp_path: Path) -> Path:
    """2 envs x 2 labels x 3 seeds; qsm beats sac everywhere; one seed's steps differ."""
    cells = []
    for env_id in ("Hopper-v4", "dmc:cartpole-swingup"):
        for algo, offset in (("qsm", 100.0), ("sac", 0.0)):
            for seed in range(3):
                steps = [0, 500, 1000] if seed != 2 else [0, 250, 750, 1000]
                evals = [(s, offset + s / 10 + seed) for s in steps]
                cells.append((algo, "", env_id, seed, evals))
    return write_sweep(tmp_path / "sweep", cells)


# --- loading -----------------------------------------------------------------------------


def test_load_single_run(tmp_path):
    run = write_run(tmp_path / "run", "td3", "Hopper-v4", 7, [(0, 1.5), (100, 2.5)])
    (curve_,) = load_curves([run])
    assert (curve_.env_id, curve_.label, curve_.seed) == ("Hopper-v4", "td3", 7)
    np.testing.assert_array_equal(curve_.steps, [0, 100])
    np.testing.assert_array_equal(curve_.returns, [1.5, 2.5])
    assert curve_.run_dir == run


def test_load_a_training_metric(tmp_path, capsys):
    run = write_run(tmp_path / "run", "qsm", "Hopper-v4", 0, [(0, 1.5), (100, 2.5)])
    (run / "train.csv").write_text("step,critic_loss,action_at_bound\n50,,\n100,3,0.25\n")
    (curve_,) = load_curves([run], metric="action_at_bound")
    np.testing.assert_array_equal(curve_.steps, [100])  # the empty warm-up row is dropped
    np.testing.assert_array_equal(curve_.returns, [0.25])
    skipped = []
    assert load_curves([run], skipped, metric="no_such_column") == [] and skipped == [run]
    out = tmp_path / "bound.png"
    assert main(["plot", str(run), "--out", str(out), "--metric", "action_at_bound"]) == 0
    assert out.stat().st_size > 0 and "action_at_bound" in capsys.readouterr().out


def test_load_multi_seed_run(tmp_path):
    run = write_multi(
        tmp_path / "multi", "sac", "Walker2d-v4", {s: [(0, s), (10, 10 + s)] for s in (0, 1, 2)}
    )
    curves = load_curves([run])
    assert [(c.label, c.seed) for c in curves] == [("sac", 0), ("sac", 1), ("sac", 2)]
    assert [c.returns[-1] for c in curves] == [10, 11, 12]


def test_load_moved_sweep_with_variants_and_unfinished_cells(tmp_path):
    cells = [
        ("qsm", "", "dmc:cartpole-swingup", 0, [(0, 1.0)]),
        ("qsm", "alpha10", "dmc:cartpole-swingup", 0, [(0, 2.0)]),
        ("sac", "", "Hopper-v4", 1, [(0, 3.0)]),
        ("sac", "", "Hopper-v4", 2, None),  # not run yet
        ("td3", "", "Hopper-v4", 0, []),  # started, no evaluation yet
    ]
    sweep = write_sweep(tmp_path / "sweep", cells, recorded_root=tmp_path / "elsewhere")
    skipped = []
    curves = load_curves([sweep], skipped)
    found = {(c.env_id, c.label, c.seed): c.returns[0] for c in curves}
    assert found == {
        ("dmc:cartpole-swingup", "qsm", 0): 1.0,
        ("dmc:cartpole-swingup", "qsm-alpha10", 0): 2.0,
        ("Hopper-v4", "sac", 1): 3.0,
    }
    assert sorted(p.name for p in skipped) == ["seed_0", "seed_2"]
    # The same runs reached through the sweep and directly count once.
    assert len(load_curves([sweep, sweep / "Hopper-v4" / "sac" / "seed_1"])) == 3


def test_load_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_curves([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a run, multi-seed run or sweep"):
        load_curves([tmp_path / "empty"])


# --- plots -------------------------------------------------------------------------------


def test_common_grid_interpolates_on_the_shared_range():
    a = curve("E", "x", 0, [(0, 0.0), (10, 10.0), (20, 20.0)])
    b = curve("E", "x", 1, [(5, 0.0), (20, 30.0), (30, 40.0)])
    steps, values = common_grid([a, b])
    np.testing.assert_array_equal(steps, [5, 10, 20])
    np.testing.assert_allclose(values, [[5, 10, 20], [0, 10, 30]])


def test_bootstrap_band():
    same = np.tile([1.0, 2.0], (4, 1))
    low, high = bootstrap_band(same)
    np.testing.assert_allclose(low, [1, 2])
    np.testing.assert_allclose(high, [1, 2])
    values = np.array([[0.0], [1.0], [2.0], [10.0]])
    low, high = bootstrap_band(values)
    assert 0.0 <= low[0] < values.mean() < high[0] <= 10.0
    again = bootstrap_band(values)  # fixed seed: the same band
    np.testing.assert_array_equal(low, again[0])
    np.testing.assert_array_equal(high, again[1])


def test_plot_writes_png(tmp_path):
    import matplotlib.image

    curves = load_curves([grid_sweep(tmp_path)])
    assert len(curves) == 12
    out = plot_curves(curves, tmp_path / "out" / "curves.png", title="synthetic")
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > image.shape[0]


def test_cli_plot(tmp_path, capsys):
    sweep = grid_sweep(tmp_path)
    single = write_run(tmp_path / "run", "td3", "Pendulum-v1", 0, [(0, -1000), (100, -200)])
    out = tmp_path / "cli.png"
    assert main(["plot", str(sweep), str(single), "--out", str(out), "--title", "T"]) == 0
    assert out.stat().st_size > 0
    assert str(out) in capsys.readouterr().out


# --- normalizers and tables --------------------------------------------------------------


def test_normalized_scores():
    hopper = NORMALIZERS["Hopper-v4"]
    assert normalized("Hopper-v4", hopper.random) == pytest.approx(0.0)
    assert normalized("Hopper-v4", hopper.reference) == pytest.approx(1.0)
    assert normalized("Hopper-v4", 1163.7545) == pytest.approx(
        (1163.7545 - hopper.random) / (2310.0 - hopper.random)
    )
    assert normalized("Pendulum-v1", -150.0) == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no normalizer for 'Nope-v0'"):
        normalized("Nope-v0", 1.0)


def test_final_scores_budget():
    evals = [(0, 1.0), (100, 2.0), (200, 3.0)]
    curves = [curve("E", "x", 0, evals), curve("E", "x", 1, [(150, 5.0), (300, 6.0)])]
    assert final_scores(curves, None) == {("E", "x"): [3.0, 6.0]}
    assert final_scores(curves, 200) == {("E", "x"): [3.0, 5.0]}
    assert final_scores(curves, 149) == {("E", "x"): [2.0]}  # seed 1: nothing <= 149
    assert final_scores(curves, 99) == {("E", "x"): [1.0]}


def scores_on(env_id: str, fractions) -> list[float]:
    """Returns whose normalized scores on env_id are ``fractions``."""
    n = NORMALIZERS[env_id]
    return [n.random + f * (n.reference - n.random) for f in fractions]


def test_iqm_and_mean_by_hand():
    scores = {("Hopper-v4", "x"): scores_on("Hopper-v4", [1.0, 0.0, 0.6, 0.2])}
    agg = normalized_aggregates(scores, reps=REPS)["x"]
    # 25% trimmed mean of 4 runs x 1 task: drop the lowest and highest, average the rest.
    assert agg["iqm"][0] == pytest.approx((0.2 + 0.6) / 2)
    assert agg["mean"][0] == pytest.approx(0.45)
    assert agg["iqm"][1] <= agg["iqm"][0] <= agg["iqm"][2]
    # 4 runs x 2 tasks: the middle 4 of all 8 scores.
    scores[("Walker2d-v4", "x")] = scores_on("Walker2d-v4", [0.1, 0.9, 0.3, 0.5])
    agg = normalized_aggregates(scores, reps=REPS)["x"]
    assert agg["iqm"][0] == pytest.approx((0.2 + 0.3 + 0.5 + 0.6) / 4)
    assert agg["mean"][0] == pytest.approx((0.45 + 0.45) / 2)
    assert agg["tasks"] == ["Hopper-v4", "Walker2d-v4"] and agg["runs"] == 4


def test_probability_of_improvement():
    scores = {
        ("Hopper-v4", "good"): [10.0, 11.0, 12.0],
        ("Hopper-v4", "bad"): [1.0, 2.0, 3.0],
        ("dmc:cheetah-run", "good"): [5.0, 6.0, 7.0],
        ("dmc:cheetah-run", "bad"): [0.0, 1.0, 4.0],
    }
    rows = {(r["x"], r["y"]): r for r in improvement_probabilities(scores, reps=REPS)}
    assert rows[("good", "bad")]["probability"] == pytest.approx((1.0, 1.0, 1.0))
    assert rows[("bad", "good")]["probability"] == pytest.approx((0.0, 0.0, 0.0))
    assert rows[("good", "bad")]["tasks"] == ["Hopper-v4", "dmc:cheetah-run"]


def parse_csv_sections(text: str) -> list[list[list[str]]]:
    return [list(csv.reader(io.StringIO(part))) for part in text.strip().split("\n\n")]


def test_table_markdown_and_csv(tmp_path):
    curves = load_curves([grid_sweep(tmp_path)])
    text = make_table(curves, None, "md", reps=REPS)
    assert "| env | label | seeds | step | mean | std | normalized |" in text
    # Hopper qsm final returns: 100 + 100 + seed -> 200, 201, 202.
    hopper = normalized("Hopper-v4", 201.0)
    assert f"| Hopper-v4 | qsm | 3 | 1000 | 201.0 | 1.0 | {hopper:.3f} |" in text
    assert "| dmc:cartpole-swingup | sac | 3 | 1000 | 101.0 | 1.0 |  |" in text
    assert "### Normalized score across tasks" in text
    assert "| qsm | sac | 2 | 3 vs 3 | 1.000 [1.000, 1.000] |" in text
    assert "| sac | qsm | 2 | 3 vs 3 | 0.000 [0.000, 0.000] |" in text
    assert "dmc:cartpole-swingup" in text.split("Notes:")[1]

    sections = parse_csv_sections(make_table(curves, 500, "csv", reps=REPS))
    per_task, aggregates, improvement, notes = sections
    assert per_task[0] == ["env", "label", "seeds", "step", "mean", "std", "normalized"]
    # Budget 500: seeds 0 and 1 at step 500 (150, 151), seed 2 at step 250 (127).
    row = [r for r in per_task if r[:2] == ["Hopper-v4", "qsm"]][0]
    assert row[2:4] == ["3", "250-500"]
    assert float(row[4]) == pytest.approx(np.mean([150, 151, 127]))
    assert float(row[5]) == pytest.approx(np.std([150, 151, 127], ddof=1), rel=1e-5)
    assert aggregates[0][:4] == ["label", "tasks", "runs_per_task", "mean_normalized"]
    assert [r[0] for r in aggregates[1:]] == ["qsm", "sac"]
    qsm = aggregates[1]
    assert float(qsm[3]) == pytest.approx(normalized("Hopper-v4", np.mean([150, 151, 127])))
    assert improvement[0] == [
        "x",
        "y",
        "tasks",
        "runs_x",
        "runs_y",
        "p_x_better",
        "ci_low",
        "ci_high",
    ]
    assert improvement[1] == ["qsm", "sac", "2", "3", "3", "1", "1", "1"]
    assert notes[0] == ["note"] and len(notes) > 1


def test_table_uses_the_fewest_seeds_and_says_so():
    curves = [curve("Hopper-v4", "x", s, [(0, 100.0 * s)]) for s in range(3)]
    curves += [curve("Walker2d-v4", "x", s, [(0, 100.0 * s)]) for s in range(2)]
    agg = normalized_aggregates(final_scores(curves), reps=REPS)["x"]
    assert agg["runs"] == 2 and agg["matrix"].shape == (2, 2)
    text = make_table(curves, reps=REPS)
    assert "different numbers of seeds for x" in text


def test_cli_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table_module, "REPS", REPS)
    sweep = grid_sweep(tmp_path)
    assert main(["table", str(sweep), "--budget", "500"]) == 0
    printed = capsys.readouterr().out
    assert "| Hopper-v4 | sac | 3 | 250-500 |" in printed
    out = tmp_path / "tables" / "results.csv"
    assert main(["table", str(sweep), "--format", "csv", "--out", str(out)]) == 0
    assert out.read_text().startswith("env,label,seeds,step,mean,std,normalized\n")


def test_cli_label_filter(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table_module, "REPS", REPS)
    sweep = grid_sweep(tmp_path)
    assert main(["table", str(sweep), "--labels", "sac"]) == 0
    printed = capsys.readouterr().out
    assert "| sac |" in printed and "| qsm |" not in printed
    assert main(["plot", str(sweep), "--out", str(tmp_path / "p.png"), "--labels", "qsm"]) == 0
    assert main(["plot", str(sweep), "--out", str(tmp_path / "q.png"), "--labels", "td3"]) == 2
    assert "no runs labelled td3" in capsys.readouterr().err


def test_cli_renames_the_runs_of_a_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table_module, "REPS", REPS)
    sweep = grid_sweep(tmp_path)
    run = write_run(tmp_path / "run", "qsm", "Hopper-v4", 0, [(0, 1.0), (500, 900.0)])
    assert main(["table", str(sweep), f"tuned={run}", "--budget", "500"]) == 0
    assert "| Hopper-v4 | tuned | 1 | 500 | 900.0 |" in capsys.readouterr().out
    # Without a new label the run collides with the sweep's qsm seed 0.
    assert main(["table", str(sweep), str(run)]) == 2
    assert "two runs of qsm on Hopper-v4 with seed 0" in capsys.readouterr().err
    other = write_run(tmp_path / "other", "qsm", "Hopper-v4", 0, [(0, 2.0), (500, 800.0)])
    assert main(["table", f"qsm={run}", f"qsm={other}"]) == 2  # two runs, one label and seed
    assert main(["table", f"qsm={run}", f"qsm={run}", "--budget", "500"]) == 0  # one run, once
    assert "| Hopper-v4 | qsm | 1 | 500 | 900.0 |" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["plot", "table"])
def test_cli_bad_paths(tmp_path, capsys, command):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        assert main([command, str(path), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qscore: error: ") and err.count("\n") == 1


def test_cli_table_budget_below_every_evaluation(tmp_path, capsys):
    run = write_run(tmp_path / "run", "qsm", "Hopper-v4", 0, [(100, 1.0)])
    assert main(["table", str(run), "--budget", "50"]) == 2
    assert "no evaluations at or before step 50" in capsys.readouterr().err


def test_cli_warns_of_runs_without_evaluations(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table_module, "REPS", REPS)
    cells = [("qsm", "", "Hopper-v4", 0, [(0, 1.0)]), ("qsm", "", "Hopper-v4", 1, None)]
    sweep = write_sweep(tmp_path / "sweep", cells)
    assert main(["table", str(sweep)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 1 run(s) with no evaluations" in err


@pytest.mark.parametrize(("command", "module"), [("plot", "matplotlib"), ("table", "rliable")])
def test_cli_without_viz_extra(tmp_path, capsys, monkeypatch, command, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    run = write_run(tmp_path / "run", "qsm", "Hopper-v4", 0, [(0, 1.0)])
    assert main([command, str(run), "--out", str(tmp_path / "o")]) == 2
    assert 'pip install "qscore[viz]"' in capsys.readouterr().err


def test_load_curves_keeps_the_labels_asked_for(tmp_path):
    sweep = grid_sweep(tmp_path)
    assert {c.label for c in load_curves([sweep], labels=["sac"])} == {"sac"}
    assert len(load_curves([sweep], labels=["qsm", "sac"])) == len(load_curves([sweep]))
    with pytest.raises(ConfigError, match="no runs labelled td3$"):
        load_curves([sweep], labels=["qsm", "td3"])
