"""Sweeps: grid expansion, resume, a failing cell, the Ray backend."""

import json

import pytest

from qscore.cli import main
from qscore.config import ConfigError
from qscore.logs import read_csv
from qscore.sweep import expand, run_sweep, sweep_cells

TINY_AGENT = """
actor_hidden = [32, 32]
critic_hidden = [32, 32]
batch_size = 16
"""


def _spec(tmp_path, body: str, name: str = "spec.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _tiny_spec(tmp_path, envs='["Pendulum-v1"]', steps=200, seeds="[0, 1]"):
    return _spec(
        tmp_path,
        f"""
algos = ["qsm", "td3"]
envs = {envs}
seeds = {seeds}
preset = "fast"
[train]
total_steps = {steps}
warmup_steps = 100
eval_every = 100
eval_episodes = 1
checkpoint_every = 100
[agent.qsm]
{TINY_AGENT}
time_features = 8
time_hidden = [16, 16]
[agent.td3]
{TINY_AGENT}
""",
    )


def test_grid_expansion_with_variants(tmp_path):
    spec = {
        "algos": ["qsm", "sac"],
        "envs": ["Hopper-v4", "dmc:cheetah-run"],
        "seeds": [0, 1, 2],
        "preset": "fast",
        "train": {"total_steps": 5000},
        "agent": {"qsm": {"q_score_scale": 25.0}},
        "variants": [
            {"name": ""},
            {"name": "t10", "algos": ["qsm"], "agent": {"num_diffusion_steps": 10}},
        ],
    }
    cells = expand(spec, tmp_path)
    assert len(cells) == 2 * (2 + 1) * 3  # envs x (qsm, qsm-t10, sac) x seeds
    labels = sorted({c.label for c in cells})
    assert labels == ["qsm", "qsm-t10", "sac"]
    t10 = [c for c in cells if c.label == "qsm-t10" and c.env_id == "Hopper-v4" and c.seed == 2]
    config = t10[0].config()
    assert config.agent.num_diffusion_steps == 10 and config.agent.q_score_scale == 25.0
    assert config.train.total_steps == 5000 and config.train.seed == 2
    assert t10[0].run_dir == str(tmp_path / "Hopper-v4" / "qsm-t10" / "seed_2")
    assert any(c.run_dir.startswith(str(tmp_path / "dmc_cheetah-run")) for c in cells)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algos": ["ppo"]}, "unknown algorithm 'ppo'"),
        ({"train": {"total_steps": -5}}, "total_steps must be >= 1"),
        ({"seeds": []}, "non-empty list 'seeds'"),
        ({"colour": "red"}, "unknown sweep spec key"),
        ({"agent": {"qsm": {"num_diffusion_steps": 0}}}, "num_diffusion_steps"),
    ],
)
def test_a_bad_spec_fails_before_any_run(tmp_path, change, message):
    spec = {"algos": ["qsm"], "envs": ["Pendulum-v1"], "seeds": [0], **change}
    with pytest.raises(ConfigError, match=message):
        expand(spec, tmp_path)


def test_rerun_skips_finished_cells_and_resumes_unfinished_ones(tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(_tiny_spec(tmp_path), out, workers=1, report=lambda r: None)
    assert [r["status"] for r in first] == ["finished"] * 4
    again = run_sweep(_tiny_spec(tmp_path), out, workers=1, report=lambda r: None)
    assert [r["status"] for r in again] == ["skipped (finished)"] * 4
    # A larger budget: every cell continues from its last checkpoint.
    longer = run_sweep(_tiny_spec(tmp_path, steps=300), out, workers=1, report=lambda r: None)
    assert [r["status"] for r in longer] == ["resumed and finished"] * 4
    for cell in sweep_cells(out):
        assert [r["step"] for r in read_csv(f"{cell.run_dir}/eval.csv")] == ["100", "200", "300"]


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path, capsys):
    spec = _tiny_spec(tmp_path, envs='["Pendulum-v1", "Pendulum-v9"]', seeds="[0]")
    code = main(["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("failed") >= 2 and "EnvError: unknown environment id 'Pendulum-v9'" in out
    assert "2 of 4 runs done; 2 failed" in out
    for algo in ("qsm", "td3"):
        summary = tmp_path / "sweep" / "Pendulum-v1" / algo / "seed_0" / "summary.json"
        assert json.loads(summary.read_text())["status"] == "completed"


def test_a_signal_stops_the_whole_sweep_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from qscore import training as train_module

    started = []

    def interrupted(config, run_dir, **kwargs):
        started.append(run_dir)
        raise train_module.TrainingInterrupted("SIGTERM received", "interrupted by SIGTERM")

    monkeypatch.setattr(train_module, "train", interrupted)
    spec = _tiny_spec(tmp_path)
    code = main(["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--workers", "1"])
    assert code == 130 and len(started) == 1  # the other three cells never started
    err = capsys.readouterr().err
    assert "the sweep stopped" in err and "run the same qscore sweep command again" in err


def test_ray_backend_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    spec = _tiny_spec(tmp_path, seeds="[0]", steps=150)
    spec.write_text(spec.read_text().replace('algos = ["qsm", "td3"]', 'algos = ["td3"]'))
    results = run_sweep(spec, tmp_path / "sweep", backend="ray", workers=1, report=lambda r: None)
    assert [r["status"] for r in results] == ["finished"]
    again = run_sweep(spec, tmp_path / "sweep", backend="ray", workers=1, report=lambda r: None)
    assert [r["status"] for r in again] == ["skipped (finished)"]


def test_local_workers_share_a_gpu_memory():
    from qscore.sweep import GPU_MEMORY_SHARE, worker_environment

    assert worker_environment(1, {}) == {}
    share = float(worker_environment(4, {})["XLA_PYTHON_CLIENT_MEM_FRACTION"])
    assert share == pytest.approx(GPU_MEMORY_SHARE / 4, abs=1e-3)
    assert 4 * share <= 0.9
    assert worker_environment(4, {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".5"}) == {}
