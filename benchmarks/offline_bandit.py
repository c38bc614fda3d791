"""Offline QSM + BC against diffusion BC on mostly poor data of the four-peak bandit.

The dataset: 2000 one-step episodes of the four-peak bandit (qscore.bandit), 15% of their
actions near a peak and the rest uniform on the box (mean reward about 0.58; a peak gives
1.0). Each learner trains offline on it for --updates updates (the test's networks: a
2x256 denoiser, 2x64 critics, batch 128, actor step 1e-3), then acts 1000 times with one
chain sample and 1000 times with the best of 32 samples by Q; the mean reward of those
actions is reported per training seed. The learners: the ``bc`` preset (diffusion BC), the
``offline`` preset (QSM + BC, Q-score weight 0.25) and the same with Q-score weight 1.

    python benchmarks/offline_bandit.py --seeds 0,1,2 \
        --json data/benchmarks/offline_bandit_cpu_DATE.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import qscore
from qscore.bandit import (
    MULTIMODAL_ID,
    bandit_episodes,
    bump_reward,
    default_peaks,
    mixed_quality_actions,
)
from qscore.datasets import write_dataset

from _common import machine_header, make_parser, write_json

PEAKS = default_peaks(4)
LEARNERS = {
    "bc": ("bc", {}),
    "qsm_bc": ("offline", {}),
    "qsm_bc_q_weight_1": ("offline", {"q_score_weight": 1.0}),
}
"""Label -> (preset, overrides) of each learner compared."""
TRAINING = {
    "actor_hidden": (256, 256),
    "critic_hidden": (64, 64),
    "batch_size": 128,
    "utd": 10,
    "actor_lr": 1e-3,
    "eval_every": 0,
    "eval_episodes": 1,
    "checkpoint_every": 0,
    "log_every": 100,
}


def train_policy(data: Path, preset: str, seed: int, updates: int, **overrides: Any) -> Any:
    """The policy of a QSM ``preset`` trained offline on dataset ``data`` with
    :data:`TRAINING` (and ``overrides``) for ``updates`` updates from ``seed``."""
    config = qscore.make_config(
        "qsm", preset, env=MULTIMODAL_ID, offline_dataset=str(data), seed=seed,
        total_steps=updates // TRAINING["utd"], **{**TRAINING, **overrides},
    )  # fmt: skip
    return qscore.train(config).policy


def mean_rewards(policy: Any, samples: int = 1000) -> dict[str, float]:
    """Mean bandit reward of ``samples`` actions with one chain sample and with best-of-32."""
    obs = np.zeros((samples, 1), np.float32)
    single = policy.with_options(best_of_n_eval=1)(obs, seed=7)
    best = policy.with_options(best_of_n_eval=32)(obs, seed=7)
    return {
        "one_sample": float(bump_reward(single, PEAKS).mean()),
        "best_of_32": float(bump_reward(best, PEAKS).mean()),
    }


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, e.g. 0,1,2")
    parser.add_argument("--updates", type=int, default=3000, help="offline updates")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    actions = mixed_quality_actions(np.random.default_rng(1), 2000, good_share=0.15)
    results = {
        **machine_header(),
        "dataset": {"episodes": 2000, "good_share": 0.15, "data_seed": 1,
                    "mean_reward": float(bump_reward(np.clip(actions, -1, 1), PEAKS).mean())},
        "updates": args.updates,
        "training": {k: list(v) if isinstance(v, tuple) else v for k, v in TRAINING.items()},
        "learners": {},
    }  # fmt: skip
    print(f"dataset mean reward {results['dataset']['mean_reward']:.3f}")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "mixed.npz"
        write_dataset(data, bandit_episodes(actions))
        for label, (preset, overrides) in LEARNERS.items():
            per_seed = []
            for seed in seeds:
                start = time.perf_counter()
                policy = train_policy(data, preset, seed, args.updates, **overrides)
                scores = mean_rewards(policy)
                per_seed.append({"seed": seed, **scores, "seconds": time.perf_counter() - start})
                print(label, per_seed[-1], flush=True)
            results["learners"][label] = {"preset": preset, "overrides": overrides,
                                          "seeds": per_seed}  # fmt: skip
    write_json(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
