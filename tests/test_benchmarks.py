"""The benchmark scripts run (on tiny shapes): their figures are measured, not tested, but a
script that no longer imports or calls what it times must fail here, not in a GPU session."""

import argparse
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from qscore import networks
from qscore.agents import common, qsm
from qscore.agents.qsm import create_qsm
from qscore.cli import main

from .helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
DATA = ROOT / "data"


def test_learner_speed_breakdown_times_every_part(tiny_config):
    learner_speed = load_script("learner_speed")
    parts = learner_speed.breakdown(obs_dim=5, action_dim=2, repeats=1, config=tiny_config)
    assert all(figures["ms"] > 0 for figures in parts.values())
    gflop = {name: figures["gflop"] for name, figures in parts.items()}
    # XLA's cost analysis sees every part's matmuls, and a whole step contains its parts.
    assert gflop["reverse chain (next actions)"] > 0
    assert gflop["critic update (whole)"] >= 0.99 * (
        gflop["TD target (chain + target critics)"] + gflop["critic loss gradient"]
    )
    assert gflop["actor update (whole)"] >= 0.99 * gflop["QSM actor loss gradient"]
    assert gflop["QSM actor loss gradient"] > gflop["Q-score grad_a Q"]


def test_learner_speed_latency_floor(tiny_config):
    learner_speed = load_script("learner_speed")
    agent = create_qsm(tiny_config, obs_dim=5, action_dim=2, seed=0)
    floor = learner_speed.latency_floor_us(agent, obs_dim=5, repeats=1)
    assert floor["dispatch_us"] > 0 and floor["hidden_matvec_us"] > 0
    for new_params in (False, True):
        latency = learner_speed.action_latency_us(agent, 5, True, repeats=1, new_params=new_params)
        assert math.isfinite(latency) and latency > 0


def test_learner_speed_matmul_layouts():
    learner_speed = load_script("learner_speed")
    layouts = learner_speed.matmul_layouts(repeats=1, rows=8, width=16, count=2)
    assert set(layouts) == {"forward_gflops", "weight_grad_gflops"}
    assert all(math.isfinite(value) and value > 0 for value in layouts.values())


def test_critic_probe_and_policy_spread_on_trained_runs(tmp_path):
    run = tmp_path / "run"
    tiny = ["--actor-hidden", "16,16", "--critic-hidden", "16,16", "--time-features", "8"]
    tiny += ["--time-hidden", "8,8", "--batch-size", "16", "--no-progress"]
    flags = ["--env", "Pendulum-v1", "--steps", "300", "--warmup-steps", "200"]
    flags += ["--eval-episodes", "1", "--out", str(run)]
    assert main(["train", *flags, *tiny]) == 0
    critic_probe = load_script("critic_probe")
    figures = critic_probe.probe(run, num_states=20)
    assert figures["states"] == 20 and figures["step"] == 300
    assert set(figures["q_ray_minus_sample"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert all(math.isfinite(d) for d in figures["q_ray_minus_sample"].values())

    sac_run = tmp_path / "sac"
    sac_flags = ["--algo", "sac", *flags[:-1], str(sac_run), "--no-progress"]
    sac_flags += ["--actor-hidden", "16,16", "--critic-hidden", "16,16", "--batch-size", "16"]
    assert main(["train", *sac_flags]) == 0
    with pytest.raises(ValueError, match="is a sac run; the probe needs a qsm run"):
        critic_probe.probe(sac_run, num_states=20)

    policy_spread = load_script("policy_spread")
    qsm_figures = policy_spread.measure(run, num_states=20, num_samples=4)
    sac_figures = policy_spread.measure(sac_run, num_states=20, num_samples=4)
    for figures in (qsm_figures, sac_figures):
        assert figures["states"] == 20 and figures["step"] == 300
        assert 0.0 < figures["action_spread"] <= 1.0
        assert 0.0 <= figures["action_at_bound"] <= 1.0
    ratios = list(qsm_figures["q_score_scale_quantiles"].values())
    assert ratios == sorted(ratios) and ratios[0] > 0.0
    bins = qsm_figures["at_bound_by_q_score_scale"].values()
    assert math.isclose(sum(b["states"] for b in bins), 1.0, rel_tol=1e-6)
    assert "q_score_scale_quantiles" not in sac_figures
    check_policy_lag(run, sac_run)
    for replay in sac_run.glob("checkpoints/*/replay.npz"):
        replay.unlink()
    with pytest.raises(FileNotFoundError, match="has no checkpoint with a replay"):
        policy_spread.measure(sac_run, num_states=20, num_samples=4)


def check_policy_lag(run: Path, sac_run: Path) -> None:
    """benchmarks/policy_lag.py on a trained QSM run: a* is the best action (gap 0), uniform
    actions are at gap 1 on average, and every figure is there and finite."""
    policy_lag = load_script("policy_lag")
    args = argparse.Namespace(states=32, candidates=64, ascent_steps=5, updates=[1, 3], from_step=0)
    [figures] = policy_lag.diagnose_run(run, args)
    assert figures["step"] == 300
    assert set(figures["after_updates"]) == {"1", "3", "step_progress"}
    assert math.isfinite(figures["after_updates"]["step_progress"])
    for gaps in (figures["policy"], figures["after_updates"]["3"]):
        assert all(math.isfinite(value) for value in gaps.values())
        assert 0.0 <= gaps["at_bound"] <= 1.0 and 0.0 <= gaps["spread"] <= 1.0
    assert len(figures["alignment_cosine"]) == len(figures["fitted_ratio"]) == 5
    assert all(-1.0 <= c <= 1.0 for c in figures["alignment_cosine"])
    assert policy_lag.plot({str(run): [figures]}, run.parent / "lag.png").stat().st_size > 0

    config, agent, _, replay = policy_lag.restore_newest_with_replay(run, ("obs",))
    obs = jnp.asarray(replay["obs"][-32:])
    best, base = policy_lag.best_actions(agent, obs, jax.random.PRNGKey(0), 64, 5)
    assert policy_lag.gap(agent, obs, best, best, base) == 0.0
    uniform = jax.random.uniform(jax.random.PRNGKey(9), (16, 32, 1), minval=-1, maxval=1)
    gaps = [policy_lag.gap(agent, obs, actions, best, base) for actions in uniform]
    assert abs(np.mean(gaps) - 1.0) < 0.25
    with pytest.raises(SystemExit, match="is a sac run, not qsm"):
        policy_lag.diagnose_run(sac_run, args)


def test_learner_speed_update_against_bound(tiny_config):
    learner_speed = load_script("learner_speed")
    _, figures = learner_speed.update_against_bound(5, 2, repeats=1, config=tiny_config)
    assert all(math.isfinite(value) and value > 0 for value in figures.values())
    ratio = figures["update_ms"] / figures["flop_bound_ms"]
    assert math.isclose(figures["update_vs_bound"], ratio)


def test_per_step_denoiser_variant_samples_the_same_chain(monkeypatch, tiny_config):
    agent = create_qsm(tiny_config, obs_dim=5, action_dim=2, seed=0)
    obs, key = jnp.ones((4, 5)), jax.random.PRNGKey(3)

    def chain():
        return qsm.sample_policy(agent.chain(), obs, key)

    split = chain()
    monkeypatch.setattr(qsm, "chain_denoiser", qsm.chain_denoiser)
    load_script("update_ablations").apply_variant("per_step_denoiser")
    assert qsm.chain_denoiser is not networks.chain_denoiser
    np.testing.assert_allclose(chain(), split, rtol=1e-5, atol=1e-5)


def test_update_ablations_remove_what_they_name(monkeypatch, tiny_config):
    # Registered with monkeypatch, so the originals come back after the test.
    monkeypatch.setitem(networks.ACTIVATIONS, "mish", networks.ACTIVATIONS["mish"])
    monkeypatch.setattr(qsm, "actor_optimizer", qsm.actor_optimizer)
    monkeypatch.setattr(qsm, "critic_optimizer", qsm.critic_optimizer)
    monkeypatch.setattr(common, "critic_optimizer", common.critic_optimizer)
    monkeypatch.setattr(qsm, "polyak", qsm.polyak)
    load_script("update_ablations").apply_variant("bare")
    x = jnp.linspace(-3.0, 3.0, 7)
    assert jnp.array_equal(networks.ACTIVATIONS["mish"](x), x)
    batches = load_script("learner_speed").random_batches(5, 2, tiny_config.batch_size, 1, 0)
    agent = create_qsm(tiny_config, obs_dim=5, action_dim=2, seed=0)
    try:
        updated, _ = qsm.update(agent, batches)
    finally:
        jax.clear_caches()  # the patched update must not serve later tests
    for state in (updated.actor_opt_state, updated.critic_opt_state):
        is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)  # noqa: E731
        assert not any(map(is_adam, jax.tree_util.tree_leaves(state, is_leaf=is_adam)))
    same = jax.tree_util.tree_map(
        jnp.array_equal, updated.target_critic_params, agent.target_critic_params
    )
    assert all(jax.tree_util.tree_leaves(same))
    assert not jnp.array_equal(
        jax.tree_util.tree_leaves(updated.critic_params)[0],
        jax.tree_util.tree_leaves(agent.critic_params)[0],
    )


def test_throughput_measures_the_loop_and_the_update_alone(tmp_path):
    throughput = load_script("throughput")
    args = argparse.Namespace(env="Pendulum-v1", steps=40, warmup=20, log_every=10, repeats=2)
    for algo, pipeline in (("td3", False), ("qsm", True)):
        alone = throughput.update_only(algo, "fast", args, pipeline)
        assert math.isfinite(alone) and alone > 0
    rate = throughput.end_to_end("td3", "fast", [0, 1], args, tmp_path)
    assert math.isfinite(rate) and rate > 0


def test_policy_latency_times_jax_and_onnxruntime(tmp_path):
    pytest.importorskip("jax2onnx")
    latency = load_script("policy_latency")
    figures = latency.measure("fast", 5, tmp_path)
    assert figures["jax_us"] > 0 and figures["onnxruntime_us"] > 0
    assert math.isfinite(figures["jax_over_onnxruntime"])


def test_dispatch_cost_counts_the_state_and_times_a_call():
    dispatch = load_script("dispatch_cost")
    figures = dispatch.dispatch_us("fast", 3, capacity=100)
    assert figures["arrays"] > 10 and figures["dispatch_us"] > 0


def test_data_index_lists_every_json_file_and_only_existing_ones():
    """data/README.md has one row per JSON file under data/, and each row's file exists."""
    index = (DATA / "README.md").read_text()
    rows = re.findall(r"^\| \[([^\]]+)\]\(([^)]+)\) \|", index, flags=re.MULTILINE)
    assert all(text == target for text, target in rows), "link text and target differ"
    listed = [target for _, target in rows]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = {path.relative_to(DATA).as_posix() for path in DATA.rglob("*.json")}
    assert sorted(set(listed) - on_disk) == [], "listed in data/README.md but missing"
    assert sorted(on_disk - set(listed)) == [], "not listed in data/README.md"


def test_every_data_file_the_docs_cite_exists():
    """A path data/benchmarks/NAME.json or data/analysis/NAME.json in the pages, the README
    or the changelog names a file that exists (placeholders in capitals are skipped)."""
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    cited = set()
    for page in pages:
        cited |= set(
            re.findall(r"data/(?:benchmarks|analysis)/[a-z0-9_.-]+\.json", page.read_text())
        )
    assert cited, "no page cites a data file"
    assert sorted(path for path in cited if not (ROOT / path).is_file()) == []
