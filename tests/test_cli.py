import importlib.util
import json
import subprocess
import sys

import pytest

from qscore.cli import main
from qscore.config import ROBUST_QSM
from qscore.logs import read_csv

TINY_FLAGS = [
    "--preset",
    "fast",
    "--actor-hidden",
    "32,32",
    "--critic-hidden",
    "32,32",
    "--time-features",
    "8",
    "--time-hidden",
    "16,16",
    "--batch-size",
    "16",
]


def test_train_then_eval_with_video_end_to_end(tmp_path):
    run, video = tmp_path / "run", tmp_path / "video.mp4"
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "qscore.cli",
            "train",
            "--algo",
            "qsm",
            "--env",
            "InvertedPendulum-v4",
            "--steps",
            "400",
            "--seed",
            "1",
            "--warmup-steps",
            "200",
            "--eval-every",
            "200",
            "--eval-episodes",
            "2",
            "--checkpoint-every",
            "200",
            "--q-score-scale",
            "120",
            "--out",
            str(run),
            *TINY_FLAGS,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    assert "final eval return" in train.stdout
    assert "step/s" in train.stderr and "eval_return" in train.stderr  # the progress bar
    config = json.loads((run / "config.json").read_text())
    assert config["agent"]["q_score_scale"] == 120.0 and config["train"]["total_steps"] == 400
    assert len(read_csv(run / "eval.csv")) == 2

    evaluate = subprocess.run(
        [
            sys.executable,
            "-m",
            "qscore.cli",
            "eval",
            str(run),
            "--episodes",
            "2",
            "--video",
            str(video),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    assert "return" in evaluate.stdout and "+-" in evaluate.stdout
    assert video.stat().st_size > 1000

    best_of = _run_cli("eval", str(run), "--episodes", "2", "--best-of-n", "4")
    assert best_of.returncode == 0, best_of.stderr
    assert "best of 4 samples" in best_of.stdout
    invalid = _run_cli("eval", str(run), "--best-of-n", "0")
    assert invalid.returncode == 2 and "best_of_n_eval must be >= 1" in invalid.stderr


def _error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env", "Hoper-v4"], "unknown environment id 'Hoper-v4'; did you mean Hopper-v4"),
        (["--env", "CartPole-v1"], "Discrete action space"),
        (["--num-diffusion-steps", "0"], "num_diffusion_steps (T) must be >= 1"),
        (["--actor-lr", "-0.1"], "actor_lr must be > 0"),
        (["--batch-size", "64", "--buffer-size", "10"], "larger than buffer_size"),
        (["--preset", "huge"], "unknown preset 'huge'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, flags, message):
    code, err = _error_of(capsys, ["train", "--out", str(tmp_path / "run"), *flags])
    assert code == 2
    assert err.startswith("qscore: error:") and "\n" not in err
    assert message in err
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_needs_overwrite(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    code, err = _error_of(capsys, ["train", "--out", str(tmp_path / "run"), "--env", "Pendulum-v1"])
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "run" / "config.json").read_text() == "{}"


def test_unknown_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "x", "--no-such-flag", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unrecognized arguments: --no-such-flag 1" in err and "\n" not in err


def test_eval_of_a_missing_run(capsys, tmp_path):
    code, err = _error_of(capsys, ["eval", str(tmp_path / "nothing")])
    assert code == 2 and "not a run directory" in err


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qscore.cli", *argv], capture_output=True, text=True, timeout=600
    )


def test_dmc_task_end_to_end_with_sac_and_action_repeat(tmp_path):
    pytest.importorskip("dm_control")
    run, video = tmp_path / "run", tmp_path / "cartpole.mp4"
    train = _run_cli(
        "train", "--algo", "sac", "--env", "dmc:cartpole-swingup", "--action-repeat", "4",
        "--steps", "300", "--warmup-steps", "100", "--eval-every", "150", "--eval-episodes", "1",
        "--actor-hidden", "32,32", "--critic-hidden", "32,32", "--batch-size", "16",
        "--out", str(run),
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "sac" and config["train"]["action_repeat"] == 4
    evals = read_csv(run / "eval.csv")
    assert [r["step"] for r in evals] == ["150", "300"]
    # the time limit of 1000 simulator steps is 250 decisions, a truncation: rewards <= 250
    assert 0.0 <= float(evals[-1]["return_mean"]) <= 250.0
    evaluate = _run_cli("eval", str(run), "--episodes", "1", "--video", str(video))
    assert evaluate.returncode == 0, evaluate.stderr
    assert video.stat().st_size > 1000


def test_seeds_flag_writes_one_directory_per_seed(tmp_path):
    run = tmp_path / "run"
    done = _run_cli(
        "train", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", "0,1", "--steps", "200",
        "--warmup-steps", "100", "--eval-episodes", "1", "--policy-delay", "3",
        "--actor-hidden", "32,32", "--critic-hidden", "32,32", "--batch-size", "16",
        "--out", str(run), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "td3 seed 0:" in done.stdout and "td3 seed 1:" in done.stdout
    for seed in (0, 1):
        saved = json.loads((run / f"seed_{seed}" / "config.json").read_text())
        assert saved["train"]["seed"] == seed and saved["agent"]["policy_delay"] == 3
        assert json.loads((run / f"seed_{seed}" / "summary.json").read_text())["steps"] == 200
    assert _run_cli("eval", str(run / "seed_1"), "--episodes", "1").returncode == 0


def test_flags_follow_the_algorithm(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algo", "sac", "--q-score-scale", "5", "--out", "x"])
    assert exit_info.value.code == 2
    assert "--q-score-scale" in capsys.readouterr().err


def test_envs_lists_gymnasium_and_dmc_ids(capsys):
    pytest.importorskip("dm_control")
    assert main(["envs"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"Hopper-v4", "Hopper-v5", "Pendulum-v1", "dmc:cheetah-run", "dmc:dog-trot"} <= set(
        listed
    )
    # nothing it cannot train on: discrete actions, retired versions, goal-conditioned tasks
    assert not {"CartPole-v1", "Acrobot-v1", "Hopper-v2", "Hopper-v3"} & set(listed)
    if importlib.util.find_spec("ogbench") is not None:  # its single-task ids, unmade
        assert {"cube-single-singletask-task1-v0", "scene-singletask-task2-v0"} <= set(listed)
        assert not {"cube-single-v0", "visual-cube-single-singletask-task1-v0"} & set(listed)
    assert main(["envs", "--all"]) == 0
    assert {"CartPole-v1", "Hopper-v4"} <= set(capsys.readouterr().out.split())


def test_default_preset_is_robust_for_qsm_and_paper_for_the_baselines(capsys, tmp_path):
    flags = TINY_FLAGS[2:] + ["--env", "Pendulum-v1", "--steps", "30", "--warmup-steps", "20"]
    flags += ["--eval-episodes", "1", "--no-progress"]
    assert main(["train", "--out", str(tmp_path / "qsm"), *flags]) == 0
    config = json.loads((tmp_path / "qsm" / "config.json").read_text())
    assert config["preset"] == "robust"
    widths = {"actor_hidden", "critic_hidden"}  # flags still override the preset
    assert {k: config["agent"][k] for k in widths} == {k: [32, 32] for k in widths}
    for name, value in ROBUST_QSM.items():
        if name not in widths:
            assert config["agent"][name] == value, name
    sac_flags = ["--env", "Pendulum-v1", "--steps", "30", "--warmup-steps", "20"]
    sac_flags += ["--eval-episodes", "1", "--no-progress", "--batch-size", "16"]
    assert main(["train", "--algo", "sac", "--out", str(tmp_path / "sac"), *sac_flags]) == 0
    assert json.loads((tmp_path / "sac" / "config.json").read_text())["preset"] == "paper"
    capsys.readouterr()
    code, err = _error_of(capsys, ["eval", str(tmp_path / "sac"), "--best-of-n", "4"])
    assert code == 2 and "--best-of-n needs a qsm run" in err


def test_help_gives_each_field_its_whole_docstring(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    # Docstrings that span several source lines are not cut after the first one.
    assert "or ``normalized_per_state`` (the same with mean|g| taken per state)." in help_text
    assert "For testing that a learner is invariant to the reward scale." in help_text


@pytest.mark.parametrize(
    "preset_flags, shown", [([], "(robust: 3)"), (["--preset", "paper"], "(paper: 1)")]
)
def test_train_help_shows_the_values_of_the_preset_the_run_uses(capsys, preset_flags, shown):
    with pytest.raises(SystemExit):
        main(["train", *preset_flags, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    n_step_help = help_text.rsplit("--n-step N_STEP", 1)[1].split("--n-step-fraction", 1)[0]
    assert n_step_help.strip().startswith("[n] TD targets") and shown in n_step_help


def test_resume_takes_the_flags_and_shows_the_preset_of_the_resumed_run(capsys, tmp_path):
    from qscore.config import make_config

    from .helpers import write_saved_config

    run = tmp_path / "run"
    write_saved_config(run, make_config("robust", algo="sac"))
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--init-temperature" in help_text and "--q-score-scale" not in help_text
    n_step_help = help_text.rsplit("--n-step N_STEP", 1)[1].split("--n-step-fraction", 1)[0]
    assert "(robust: 3)" in n_step_help
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(run), "--q-score-scale", "5"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --q-score-scale 5" in capsys.readouterr().err
    code, err = _error_of(capsys, ["train", "--resume", str(run), "--init-temperature", "0.5"])
    assert code == 2 and "init_temperature is 1.0 in the run, 0.5 given" in err
