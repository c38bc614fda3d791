"""Learner speed of QSM (``paper`` preset) against the matmul throughput of this machine.

For each task shape it reports, from one process:

* ``update_ms``: median wall time of one jitted update (batch 256, T=5, 2x512 networks);
* ``update_gflop``: the update's floating-point work, from XLA's cost analysis;
* ``matmul_gflops``: the throughput of chained float32 matmuls of the update's main shape
  (256 x 512 @ 512 x 512), timed in alternation with the updates so both see the same load;
* ``flop_bound_ms``: update_gflop / matmul_gflops, the time the update would take if it ran
  entirely at matmul speed; ``update_vs_bound`` is update_ms / flop_bound_ms;
* ``action_latency_us``: median time of one exploration action for one observation
  (the full reverse chain, host to host) by ``agent.act``, as a fixed policy acts in
  evaluation and deployment: the denoiser's terms that depend on its parameters alone are
  computed by the first call and reused;
* ``action_latency_new_params_us``: the same action with those terms computed in the same
  call (``agent.policy``), as the first action after a parameter change costs; the training
  loop acts this way, once per update;
* ``dispatch_us`` and ``hidden_matvec_us``: what an action cannot get below on this machine:
  a jitted call that takes the same parameters and observation and does nothing, and the
  T dependent (1 x w) @ (w x w) products by one w x w matrix, as the chain's w-wide hidden
  layer does (one per reverse step, in one jitted call); they are bound by memory bandwidth
  (each reads the whole weight matrix), not by FLOPs;
* ``matmul_layouts`` (once per run): the throughput of the two matmul layouts of a backward
  pass at the update's main shape, 16 independent products per call: the forward and
  input-gradient layout (256 x 512) @ (512 x 512), and the weight-gradient layout
  (256 x 512)^T @ (256 x 512), which contracts over the batch;
* ``robust_action_latency``: the same for the ``robust`` preset, whose action is the best of
  N chain samples by Q, when exploring and when evaluating (with N and the times).

Usage: python benchmarks/learner_speed.py [--json PATH] [--repeats N]
"""

from __future__ import annotations

import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qscore.agents import common, qsm
from qscore.agents.qsm import create_qsm, update
from qscore.config import QSMConfig, make_config
from qscore.replay import Batch

from _common import machine_header, make_parser, wall_ms, write_json
from _common import median_us as common_median_us

SHAPES = {"Hopper-v4": (11, 3), "Humanoid-v4": (376, 17)}
"""(observation size, action size) of the benchmarked tasks; no simulator is needed."""


def random_batches(obs_dim: int, action_dim: int, batch_size: int, utd: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    shape = (utd, batch_size)
    return Batch(
        obs=jnp.asarray(rng.normal(size=(*shape, obs_dim)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(*shape, action_dim)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=shape), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(*shape, obs_dim)), jnp.float32),
        terminated=jnp.zeros(shape, jnp.float32),
        horizon=jnp.ones(shape, jnp.float32),
    )


def chained_matmuls(rows: int, width: int, chain: int):
    """A jitted call of ``chain`` dependent (rows x width) @ (width x width) float32 matmuls,
    and its FLOP count."""
    weights = jax.random.normal(jax.random.PRNGKey(0), (width, width)) / np.sqrt(width)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (rows, width))

    @jax.jit
    def chained(x):
        return jax.lax.fori_loop(0, chain, lambda _, y: y @ weights, x)

    chained(x0).block_until_ready()
    return (lambda: chained(x0).block_until_ready()), 2.0 * rows * width * width * chain


def matmul_layouts(repeats: int, rows: int = 256, width: int = 512, count: int = 16) -> dict:
    """GFLOP/s of ``count`` independent (rows x width) @ (width x width) products by one
    weight matrix (a layer applied to ``count`` batches) and of as many weight-gradient
    products (rows x width)^T @ (rows x width), timed in alternation."""
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    xs = jax.random.normal(keys[0], (count, rows, width))
    gs = jax.random.normal(keys[1], (count, rows, width))
    weight = jax.random.normal(keys[2], (width, width)) / np.sqrt(width)
    forward = jax.jit(lambda x, w: [x[i] @ w for i in range(count)])
    weight_grad = jax.jit(lambda x, g: [x[i].T @ g[i] for i in range(count)])
    jax.block_until_ready((forward(xs, weight), weight_grad(xs, gs)))
    forward_ms, weight_grad_ms = [], []
    for _ in range(repeats):
        forward_ms.append(wall_ms(lambda: jax.block_until_ready(forward(xs, weight))))
        weight_grad_ms.append(wall_ms(lambda: jax.block_until_ready(weight_grad(xs, gs))))
    gflop = 2.0 * rows * width * width * count / 1e9
    return {
        "forward_gflops": gflop / statistics.median(forward_ms) * 1e3,
        "weight_grad_gflops": gflop / statistics.median(weight_grad_ms) * 1e3,
    }


def update_flops(agent, batches) -> float:
    """FLOPs of one update from XLA's cost analysis (the reverse chain is unrolled, so every
    step is counted; XLA counts a rolled loop's body once)."""
    analysis = jax.jit(update).lower(agent, batches).compile().cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis["flops"])


def median_us(fn, repeats: int) -> float:
    """Median wall time of ``fn`` over 20 * ``repeats`` calls after 20 warm-up calls, in
    microseconds (short calls: many samples)."""
    return common_median_us(fn, 20 * repeats, warmup=20)


def action_latency_us(
    agent, obs_dim: int, explore: bool, repeats: int, new_params: bool = False
) -> float:
    """Median host-to-host time of one action for one observation, in microseconds: by
    ``agent.act`` (a fixed policy), or with ``new_params`` by ``agent.policy``, which also
    computes the denoiser's parameter-only terms."""
    obs = np.zeros(obs_dim, np.float32)
    key = {"key": jax.random.PRNGKey(0)}

    def one_action():
        if new_params:
            action, key["key"] = agent.policy(obs, key["key"], explore=explore)
            np.asarray(action)
        else:
            _, key["key"] = agent.act(obs, key["key"], explore=explore)

    return median_us(one_action, repeats)


def latency_floor_us(agent, obs_dim: int, repeats: int) -> dict[str, float]:
    """Median host-to-host times of a jitted no-op on the action's arguments, and of the
    chain's T hidden-layer matrix-vector products, in microseconds."""
    config = agent.config
    obs = np.zeros(obs_dim, np.float32)
    no_op = jax.jit(lambda actor, critic, o: o[:1])
    width = config.actor_hidden[-1]
    weights = jax.random.normal(jax.random.PRNGKey(0), (width, width)) / np.sqrt(width)
    row = jnp.ones((1, width), jnp.float32)

    @jax.jit
    def hidden_matvecs(x, w):
        for _ in range(config.num_diffusion_steps):
            x = jnp.tanh(x @ w)
        return x

    return {
        "dispatch_us": median_us(
            lambda: np.asarray(no_op(agent.actor_params, agent.critic_params, obs)), repeats
        ),
        "hidden_matvec_us": median_us(
            lambda: hidden_matvecs(row, weights).block_until_ready(), repeats
        ),
    }


def robust_latency(obs_dim: int, action_dim: int, repeats: int) -> dict[str, float]:
    """Action latency of the ``robust`` preset, whose actions are the best of N chain samples
    by Q (N = ``best_of_n_explore`` when exploring, ``best_of_n_eval`` when evaluating)."""
    config = make_config("robust").agent
    agent = create_qsm(config, obs_dim, action_dim, seed=0)
    return {
        "explore_us": action_latency_us(agent, obs_dim, explore=True, repeats=repeats),
        "explore_samples": config.best_of_n_explore,
        "eval_us": action_latency_us(agent, obs_dim, explore=False, repeats=repeats),
        "eval_samples": config.best_of_n_eval,
    }


def update_against_bound(
    obs_dim: int, action_dim: int, repeats: int, config: QSMConfig | None = None
) -> tuple[Any, dict[str, float]]:
    """The agent of a task shape (``paper`` preset unless ``config`` is given), and its
    update time against the FLOP bound: ``update_ms``, ``update_gflop``, ``matmul_gflops``,
    ``flop_bound_ms`` and ``update_vs_bound``. Updates and chained matmuls are timed in
    alternation, so both see the same load."""
    config = config or make_config("paper").agent
    agent = create_qsm(config, obs_dim, action_dim, seed=0)
    batches = random_batches(obs_dim, action_dim, config.batch_size, config.utd, seed=0)
    matmuls, matmul_flops = chained_matmuls(rows=256, width=512, chain=64)
    state = {"agent": agent}

    def one_update():
        state["agent"], metrics = update(state["agent"], batches)
        jax.block_until_ready(metrics)

    for _ in range(5):
        one_update()
    update_times, matmul_times = [], []
    for _ in range(repeats):
        update_times.append(wall_ms(one_update))
        matmul_times.append(wall_ms(matmuls))
    update_ms = statistics.median(update_times)
    throughput = matmul_flops / (statistics.median(matmul_times) * 1e-3) / 1e9
    gflop = update_flops(agent, batches) / 1e9
    bound_ms = gflop / throughput * 1e3
    return agent, {
        "update_ms": update_ms,
        "update_gflop": gflop,
        "matmul_gflops": throughput,
        "flop_bound_ms": bound_ms,
        "update_vs_bound": update_ms / bound_ms,
    }


def bench_shape(obs_dim: int, action_dim: int, repeats: int) -> dict:
    """Update time against the FLOP bound, action latency and its floors, for one shape."""
    agent, figures = update_against_bound(obs_dim, action_dim, repeats)
    return {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        **figures,
        "action_latency_us": action_latency_us(agent, obs_dim, explore=True, repeats=repeats),
        "action_latency_new_params_us": action_latency_us(
            agent, obs_dim, explore=True, repeats=repeats, new_params=True
        ),
        **latency_floor_us(agent, obs_dim, repeats),
        "robust_action_latency": robust_latency(obs_dim, action_dim, repeats),
    }


def breakdown(
    obs_dim: int, action_dim: int, repeats: int, config: QSMConfig | None = None
) -> dict[str, dict[str, float]]:
    """Time and FLOPs of the parts of one update (of the ``paper`` preset unless ``config``
    is given), timed in alternation with the matmuls."""
    config = config or make_config("paper").agent
    agent = create_qsm(config, obs_dim, action_dim, seed=0)
    batch = jax.tree_util.tree_map(
        lambda x: x[0], random_batches(obs_dim, action_dim, config.batch_size, 1, seed=0)
    )
    key, target = jax.random.PRNGKey(0), jnp.zeros(config.batch_size)
    parts = {
        "reverse chain (next actions)": (
            lambda a, o, k: qsm.sample_policy(a.chain(), o, k),
            (agent, batch.next_obs, key),
        ),
        "TD target (chain + target critics)": (qsm.td_target, (agent, batch, key)),
        "critic loss gradient": (
            jax.grad(lambda p: common.critic_loss(config, p, batch, target)[0]),
            (agent.critic_params,),
        ),
        "Q-score grad_a Q": (
            lambda p: qsm.q_score(config, p, batch.obs, batch.action),
            (agent.critic_params,),
        ),
        "QSM actor loss gradient": (
            jax.grad(
                lambda p, c: qsm.qsm_actor_loss(
                    agent.chain().replace(actor_params=p, critic_params=c), batch, key
                )[0]
            ),
            (agent.actor_params, agent.critic_params),
        ),
        "critic Adam step": (
            lambda g, s: common.critic_optimizer(config).update(g, s),
            (agent.critic_params, agent.critic_opt_state),
        ),
        "critic update (whole)": (qsm.update_critic, (agent, batch, key)),
        "actor update (whole)": (qsm.update_actor, (agent, batch, key)),
    }
    matmuls, matmul_flops = chained_matmuls(rows=256, width=512, chain=64)
    compiled = {name: (jax.jit(fn), args) for name, (fn, args) in parts.items()}
    times: dict[str, list[float]] = {name: [] for name in compiled}
    matmul_times = []
    for fn, args in compiled.values():
        jax.block_until_ready(fn(*args))
    for _ in range(repeats):
        for name, (fn, args) in compiled.items():
            times[name].append(wall_ms(lambda f=fn, a=args: jax.block_until_ready(f(*a))))
        matmul_times.append(wall_ms(matmuls))
    throughput = matmul_flops / (statistics.median(matmul_times) * 1e-3) / 1e9
    result = {}
    for name, (fn, args) in compiled.items():
        analysis = fn.lower(*args).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        gflop = float(analysis["flops"]) / 1e9
        ms = statistics.median(times[name])
        bound_ms = gflop / throughput * 1e3
        result[name] = {"ms": ms, "gflop": gflop, "bound_ms": bound_ms}
        print(f"  {name:36s} {ms:6.2f} ms  {gflop:6.3f} GFLOP  bound {bound_ms:5.2f} ms")
    return result


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions per figure")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the parts of an update (Hopper shape)"
    )
    args = parser.parse_args()

    header = machine_header("device", "backend", "cpu_count", "platform", "jax")
    results = {**header, "preset": "paper", "shapes": {}}
    for name, (obs_dim, action_dim) in SHAPES.items():
        figures = bench_shape(obs_dim, action_dim, args.repeats)
        results["shapes"][name] = figures
        f = figures
        print(
            f"{name:12s} update {f['update_ms']:6.2f} ms | {f['update_gflop']:.2f} GFLOP | matmul"
            f" {f['matmul_gflops']:4.0f} GFLOP/s | bound {f['flop_bound_ms']:5.2f} ms | ratio"
            f" {f['update_vs_bound']:.2f} | action latency {f['action_latency_us']:4.0f} us"
            f" (no-op call {f['dispatch_us']:3.0f} us,"
            f" hidden matvecs {f['hidden_matvec_us']:3.0f} us;"
            f" after new parameters {f['action_latency_new_params_us']:4.0f} us)"
        )
        robust = f["robust_action_latency"]
        print(
            f"{'':12s} robust action latency: explore (best of {robust['explore_samples']})"
            f" {robust['explore_us']:4.0f} us, eval (best of {robust['eval_samples']})"
            f" {robust['eval_us']:4.0f} us"
        )
    layouts = results["matmul_layouts"] = matmul_layouts(args.repeats)
    print(
        f"matmul layouts (256 x 512 by 512): forward {layouts['forward_gflops']:4.0f} GFLOP/s,"
        f" weight gradient {layouts['weight_grad_gflops']:4.0f} GFLOP/s"
    )
    if args.breakdown:
        print("parts of one Hopper-v4 update:")
        results["breakdown_hopper"] = breakdown(*SHAPES["Hopper-v4"], args.repeats)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
