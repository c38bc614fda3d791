"""One action's latency on the CPU: the JAX policy against its ONNX export in onnxruntime.

For each QSM preset (untrained networks of the preset's sizes; Hopper-v4's dimensions,
11 -> 3): the median over ``--repeats`` single-observation calls of the JAX agent's
``act`` (the jitted chain, denoiser tables cached) and of onnxruntime's ``run`` on the
exported graph with the noise already drawn (NumPy), and their ratio.

Usage: python benchmarks/policy_latency.py [--json PATH] [--presets robust,paper,fast]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np
import onnxruntime

from qscore.agents.qsm import create_qsm
from qscore.api import Policy
from qscore.config import make_config
from qscore.export import ACTION_OUTPUT, NOISE_INPUT, OBS_INPUT, export_onnx

from _common import machine_header, make_parser, median_us, write_json

OBS_DIM, ACTION_DIM = 11, 3


def measure(preset: str, repeats: int, workdir: Path) -> dict:
    config = make_config(preset).agent
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    bounds = np.ones(ACTION_DIM, np.float32)
    path = export_onnx(Policy(agent, -bounds, bounds, OBS_DIM), workdir / f"{preset}.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    obs = rng.normal(size=OBS_DIM).astype(np.float32)
    noise_shape = (config.num_diffusion_steps + 1, config.best_of_n_eval, ACTION_DIM)
    inputs = {OBS_INPUT: obs[None], NOISE_INPUT: rng.normal(size=noise_shape).astype(np.float32)}
    key = jax.random.PRNGKey(0)
    jax_us = median_us(lambda: agent.act(obs, key, explore=False)[0], repeats)
    onnx_us = median_us(lambda: session.run([ACTION_OUTPUT], inputs), repeats)
    return {
        "best_of_n_eval": config.best_of_n_eval,
        "jax_us": jax_us,
        "onnxruntime_us": onnx_us,
        "jax_over_onnxruntime": jax_us / onnx_us,
    }


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--presets", default="robust,paper,fast")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    results = {**machine_header("device", "platform", "onnxruntime"), "presets": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for preset in filter(None, args.presets.split(",")):
            figures = measure(preset, args.repeats, Path(workdir))
            results["presets"][preset] = figures
            print(
                f"{preset} (best of {figures['best_of_n_eval']}): JAX {figures['jax_us']:.0f} us,"
                f" onnxruntime {figures['onnxruntime_us']:.0f} us per action",
                flush=True,
            )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
