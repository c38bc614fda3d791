"""Learning test: QSM with the `fast` preset must solve Pendulum-v1 in 10k steps.

A random or broken policy scores about -1200 to -1600 on Pendulum-v1; a good one about
-150 to -200 (over random starts). Seeds 0-3 of this setting reached best evaluations
between -166 and -200 when the test was written (docs/benchmarks.md).
"""

import pytest

from qscore.config import make_config
from qscore.logs import read_csv
from qscore.train import train


@pytest.mark.slow
def test_qsm_fast_preset_solves_pendulum(tmp_path):
    config = make_config(
        "fast",
        train_overrides={
            "env_id": "Pendulum-v1",
            "seed": 0,
            "total_steps": 10_000,
            "warmup_steps": 1_000,
            "eval_every": 2_000,
            "eval_episodes": 10,
            "checkpoint_every": 0,
        },
    )
    summary = train(config, tmp_path / "run", progress=False)
    returns = [float(r["return_mean"]) for r in read_csv(tmp_path / "run" / "eval.csv")]
    assert returns[0] < -1000, returns  # after the warm-up only: not solved by luck
    assert summary["best_eval"]["return_mean"] > -300, returns
    assert returns[-1] > -450, returns
