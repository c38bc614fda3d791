"""The ``qscore`` command line: ``train``, ``eval``, ``sweep``, ``plot``, ``table``, ``envs``,
``demo``.

Every field of the chosen algorithm's config (:class:`~qscore.config.QSMConfig`,
:class:`~qscore.config.SACConfig` or :class:`~qscore.config.TD3Config`) and of
:class:`~qscore.config.TrainConfig` is a flag (``q_score_scale`` -> ``--q-score-scale``);
flags override the chosen preset. Bad input ends with a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from qscore.config import (
    ALGORITHM_CONFIGS,
    DEFAULT_PRESETS,
    PRESETS,
    RunConfig,
    make_config,
    validate,
)
from qscore.errors import (
    ConfigError,
    EnvError,
    RunDirError,
    TrainingDiverged,
    TrainingInterrupted,
)

USAGE_ERROR = 2
FLAG_ALIASES = {
    "env_id": ["--env"],
    "total_steps": ["--steps"],
    "offline_dataset": ["--offline"],
}
"""Short names for the most used fields, beside their full names."""
AGENT, TRAIN = "agent", "train"
"""Prefixes of the argparse destinations of learner and loop fields."""


def _field_doc(cls: type, name: str) -> str:
    """The docstring under a dataclass field, whole and on one line, taken from the source
    of the class or of the base class that declares it (for --help)."""
    for owner in cls.__mro__:
        if name in getattr(owner, "__annotations__", {}):
            return _doc_in_source(owner, name)
    return ""


def _doc_in_source(cls: type, name: str) -> str:
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return ""
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:") and i + 1 < len(lines):
            text = lines[i + 1].strip()
            if not text.startswith('"""'):
                return ""
            text = text[3:]
            for follow in lines[i + 2 :]:
                if text.endswith('"""'):
                    break
                text += " " + follow.strip()
            return text.removesuffix('"""').strip()
    return ""


def _parse_ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers: network widths (``256,256``) or seeds (``0,1,2``)."""
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from error


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_optional_float(text: str) -> float | None:
    if text.lower() in ("none", "auto", "default"):
        return None
    try:
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from error


def _flag_type(default: Any) -> Any:
    if default is None:
        return _parse_optional_float
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, tuple):
        return _parse_ints
    return type(default)


def add_config_flags(
    parser: argparse.ArgumentParser,
    defaults: Any,
    prefix: str,
    group_title: str,
    preset: str,
) -> None:
    """One flag per field of the dataclass ``defaults``, whose values the help shows (those
    of ``preset``); defaults are suppressed so that only given flags override."""
    cls = type(defaults)
    group = parser.add_argument_group(group_title)
    for f in fields(cls):
        default = getattr(defaults, f.name)
        names = FLAG_ALIASES.get(f.name, []) + ["--" + f.name.replace("_", "-")]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            *names,
            dest=f"{prefix}.{f.name}",
            type=_flag_type(default),
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{_field_doc(cls, f.name)} ({preset}: {shown})",
        )


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit code 2), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _add_results_arguments(parser: argparse.ArgumentParser) -> None:
    """The run selection shared by ``plot`` and ``table``: directories and a label filter."""
    parser.add_argument(
        "dirs", nargs="+", metavar="[LABEL=]DIR",
        help="run, multi-seed run or sweep directories; LABEL=DIR gives all its runs LABEL",
    )  # fmt: skip
    parser.add_argument(
        "--labels", type=_parse_labels, metavar="A,B",
        help="keep only these labels (qsm, sac, qsm-alpha10, ...)",
    )  # fmt: skip


def _add_eval_and_export_parsers(commands: Any) -> None:
    """The ``eval`` and ``export`` commands (``commands``: the parser's subparsers)."""
    evaluate = commands.add_parser("eval", help="evaluate a trained run's newest checkpoint")
    evaluate.add_argument("run_dir", type=Path, help="a run directory written by qscore train")
    evaluate.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    evaluate.add_argument(
        "--checkpoint", type=Path, help="checkpoint directory (default: the newest)"
    )
    evaluate.add_argument("--video", type=Path, help="write the first episode to this .mp4")
    evaluate.add_argument(
        "--best-of-n",
        type=int,
        help="QSM only: act with the best of this many chain samples by Q "
        "(default: the run's best_of_n_eval)",
    )
    evaluate.add_argument(
        "--policy",
        type=Path,
        help="run this ONNX file (from qscore export) with onnxruntime instead of JAX",
    )
    export = commands.add_parser(
        "export",
        help="write a run's policy (qsm, sac or td3) as one ONNX file (needs the export extra)",
    )
    export.add_argument("run_dir", type=Path, help="a run directory written by qscore train")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument(
        "--best-of-n",
        type=int,
        help="QSM only: chain samples picked from by Q (default: the run's)",
    )
    export.add_argument(
        "--stochastic",
        action="store_true",
        help="SAC only: the sampled policy tanh(mu + sigma * noise), the noise an input "
        "(default: the deterministic tanh(mu))",
    )


def build_parser(algo: str = "qsm", preset: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``train`` gets the flags of ``algo``'s config, and its help shows the
    values of ``preset`` (default: the algorithm's default preset)."""
    if preset not in PRESETS[algo]:
        preset = DEFAULT_PRESETS[algo]
    defaults = make_config(preset, algo=algo)
    parser = OneLineParser(
        prog="qscore", description="Diffusion policies trained with Q-score matching."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train agents; writes a run directory")
    train.add_argument(
        "--algo", choices=sorted(ALGORITHM_CONFIGS), help="learning algorithm (default: qsm)"
    )
    train.add_argument(
        "--preset",
        default=None,
        help=f"one of: {', '.join(PRESETS[algo])} (default: {DEFAULT_PRESETS[algo]})",
    )
    train.add_argument("--out", type=Path, help="run directory to create")
    train.add_argument(
        "--seeds",
        type=_parse_ints,
        help="train one agent per seed in one process (e.g. 0,1,2,3); outputs in OUT/seed_S",
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run from its newest checkpoint (--steps may extend it)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    name = type(defaults.agent).__name__
    add_config_flags(train, defaults.agent, AGENT, f"learner ({name}, --algo {algo})", preset)
    add_config_flags(train, defaults.train, TRAIN, "training loop (TrainConfig)", preset)

    _add_eval_and_export_parsers(commands)

    _add_collect_parser(commands)

    sweep = commands.add_parser("sweep", help="run a grid of runs from a TOML spec (resumable)")
    sweep.add_argument("spec", type=Path, help="sweep spec (see qscore.sweep)")
    sweep.add_argument("--out", type=Path, required=True, help="sweep directory")
    sweep.add_argument("--backend", choices=["local", "ray"], default="local")
    sweep.add_argument(
        "--workers", type=int, default=2, help="parallel runs (local pool or Ray CPUs)"
    )
    sweep.add_argument("--address", help="address of an existing Ray cluster (ray backend)")

    plot = commands.add_parser(
        "plot", help="plot learning curves of runs and sweeps (needs qscore[viz])"
    )
    _add_results_arguments(plot)
    plot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    plot.add_argument("--title", help="figure title")
    plot.add_argument(
        "--metric",
        default="return_mean",
        help="column to plot: of eval.csv (return_mean, q_bias, ...) or train.csv "
        "(action_at_bound, score_alignment, ...); default: the evaluation return",
    )

    table = commands.add_parser(
        "table", help="final-return and aggregate tables of runs and sweeps (needs qscore[viz])"
    )
    _add_results_arguments(table)
    table.add_argument(
        "--budget", type=int, metavar="STEPS",
        help="score each run by its last evaluation at or before this step (default: its last)",
    )  # fmt: skip
    table.add_argument("--format", choices=["md", "csv"], default="md", help="output format")
    table.add_argument("--out", type=Path, help="file to write (default: standard output)")

    demo = commands.add_parser(
        "demo",
        help="toy demonstrations: 'multimodal' trains QSM and SAC on a bandit with several "
        "equally good actions and draws their action samples (needs qscore[viz])",
    )
    demo.add_argument("name", metavar="NAME", help="the demo to run: multimodal")
    demo.add_argument("--out", type=Path, required=True, help="directory to write")
    demo.add_argument("--steps", type=int, help="training steps per algorithm (default: 2000)")
    demo.add_argument("--seed", type=int, help="seed of both runs and the samples (default: 0)")
    demo.add_argument(
        "--peaks", type=int, choices=[2, 4], help="peaks of the bandit's reward (default: 4)"
    )
    demo.add_argument(
        "--samples", type=int, help="actions sampled per policy and step (default: 1000)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace existing run dirs")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    envs = commands.add_parser("envs", help="list the environment ids qscore can train on")
    envs.add_argument(
        "--all",
        action="store_true",
        help="every registered id, without making each env to check that qscore can train on it",
    )
    return parser


def _add_collect_parser(commands: Any) -> None:
    collect = commands.add_parser(
        "collect", help="write an offline dataset (OGBench's format) from a trained run"
    )
    collect.add_argument("run_dir", type=Path, help="a single-seed run directory")
    collect.add_argument(
        "--out", type=Path, required=True, help="dataset FILE.npz to write (and FILE-val.npz)"
    )
    collect.add_argument("--episodes", type=int, default=100, help="episodes to collect")
    collect.add_argument(
        "--noise", type=float, default=0.0, help="std of Gaussian noise added to each action"
    )
    collect.add_argument(
        "--random-fraction", type=float, default=0.0, metavar="P",
        help="share of steps that take a uniform-random action instead (1: a random dataset)",
    )  # fmt: skip
    collect.add_argument(
        "--replay", action="store_true",
        help="write the run's saved replay buffer instead of collecting new episodes",
    )  # fmt: skip
    collect.add_argument("--seed", type=int, default=0, help="seed of the episodes and noise")
    collect.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of episodes in FILE-val.npz"
    )
    collect.add_argument("--overwrite", action="store_true", help="replace existing files")
    collect.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ogbench = commands.add_parser(
        "ogbench-data",
        help="make an OGBench manipulation dataset with the package's oracles (offline extra)",
    )
    ogbench.add_argument("name", help="OGBench dataset name, e.g. cube-single-play-v0")
    ogbench.add_argument(
        "--out", type=Path, required=True, help="folder for NAME.npz, NAME-val.npz"
    )
    ogbench.add_argument(
        "--episodes", type=int, default=1000, help="training episodes (and a tenth more for -val)"
    )
    ogbench.add_argument(
        "--episode-steps", type=int, default=1001, help="steps per episode (OGBench: 1001)"
    )
    ogbench.add_argument("--seed", type=int, default=0, help="seed of the whole collection")
    ogbench.add_argument("--overwrite", action="store_true", help="replace existing files")
    ogbench.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _given_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {AGENT: {}, TRAIN: {}}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in overrides:
            overrides[section][name] = value
    return overrides


def _saved_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a single-seed run, or of the first seed of a multi-seed run."""
    from qscore.rundir import read_config

    return read_config(run_dir)


def resume_config(args: argparse.Namespace) -> RunConfig:
    """The run's saved config, checked against the flags given and the installed packages.

    Only ``--steps`` may differ (to extend a run); any other differing flag or a different
    version of a package the results depend on is an error.
    """
    from qscore.rundir import package_versions

    run_dir = args.resume
    saved = _saved_config(run_dir)
    config = RunConfig.from_dict(saved)
    sections = {AGENT: config.agent, TRAIN: config.train}
    steps = None
    for section, values in _given_overrides(args).items():
        for name, value in values.items():
            if name == "total_steps":
                steps = value
            elif getattr(sections[section], name) != value and name != "seed":
                raise ConfigError(
                    f"cannot resume {run_dir} with a different config: {name} is "
                    f"{getattr(sections[section], name)!r} in the run, {value!r} given"
                )
    for name, given, ran in (
        ("preset", args.preset, config.preset),
        ("algo", args.algo, config.algo),
    ):
        if given is not None and given != ran:
            raise ConfigError(f"cannot resume {run_dir} with {name} {given!r}: it ran {ran!r}")
    for package, version in package_versions().items():
        recorded = saved.get("versions", {}).get(package)
        if recorded != version:
            raise ConfigError(
                f"cannot resume {run_dir}: it ran with {package} {recorded}, "
                f"this environment has {version}"
            )
    if steps is not None:
        train = {**asdict(config.train), "total_steps": steps}
        config = make_config(config.preset, asdict(config.agent), train, config.algo)
    return config


def run_train(args: argparse.Namespace) -> int:
    from qscore.rundir import check_run_dir

    if args.resume is None and args.out is not None:
        check_run_dir(Path(args.out), args.overwrite)  # at once, before JAX is imported
    from qscore.training import resume, train_seeds

    if args.resume is not None:
        if args.out is not None or args.overwrite or args.seeds:
            raise ConfigError(
                "--resume continues its own directory; drop --out, --seeds, --overwrite"
            )
        config = resume_config(args)
        summaries = resume(config, args.resume, progress=not args.no_progress)
        run_dir = args.resume
    else:
        if args.out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
        overrides = _given_overrides(args)
        algo = args.algo or "qsm"
        preset = args.preset or DEFAULT_PRESETS[algo]
        config = make_config(preset, overrides[AGENT], overrides[TRAIN], algo)
        seeds = list(args.seeds or [config.train.seed])
        summaries = train_seeds(
            config, seeds, args.out, overwrite=args.overwrite, progress=not args.no_progress
        )
        run_dir = args.out
    for summary in summaries:
        final = summary["final_eval"]
        print(
            f"{summary['algo']} seed {summary['seed']}: {summary['steps']} steps of "
            f"{summary['env_id']}, final eval return {final['return_mean']:.2f} +- "
            f"{final['return_std']:.2f}"
        )
    print(f"run directory: {run_dir}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import imageio.v2 as imageio
    import jax
    import numpy as np

    from qscore.checkpoint import latest_checkpoint, restore_agent
    from qscore.envs import make_env, space_dims
    from qscore.evaluate import run_episodes
    from qscore.rundir import run_seeds

    if args.episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    if run_seeds(args.run_dir):
        raise RunDirError(f"{args.run_dir} holds several seeds; evaluate one, e.g. its seed_S/")
    config = RunConfig.from_dict(_saved_config(args.run_dir))
    if args.best_of_n is not None:
        if not hasattr(config.agent, "best_of_n_eval"):
            raise ConfigError(f"--best-of-n needs a qsm run; {args.run_dir} is {config.algo}")
        config = validate(
            replace(config, agent=replace(config.agent, best_of_n_eval=args.best_of_n))
        )
    tc = config.train
    render_mode = "rgb_array" if args.video else None
    env = make_env(tc.env_id, render_mode=render_mode, action_repeat=tc.action_repeat)
    obs_dim, action_dim = space_dims(env)
    checkpoint = args.checkpoint or latest_checkpoint(args.run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{args.run_dir} has no checkpoint")
    agent, step = restore_agent(config, obs_dim, action_dim, checkpoint)
    best_of_n = getattr(config.agent, "best_of_n_eval", 1)
    picking = f" (best of {best_of_n} samples by Q)" if best_of_n > 1 else ""
    if args.policy is not None:
        agent = _onnx_agent(args.policy, agent, env, obs_dim, args.best_of_n)
        picking = _onnx_picking(agent)
    frames: list[np.ndarray] | None = [] if args.video else None
    returns = run_episodes(
        agent, env, args.episodes, args.seed, jax.random.PRNGKey(args.seed), frames
    )
    print(
        f"{config.algo} on {tc.env_id} at step {step}: return {returns.mean():.2f} +- "
        f"{returns.std():.2f} over {args.episodes} episodes{picking}"
    )
    if args.video:
        fps = env.metadata.get("render_fps", 30)
        args.video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimsave(args.video, frames, fps=fps, macro_block_size=1)
        print(f"video of the first episode ({len(frames)} frames) written to {args.video}")
    return 0


def _onnx_agent(
    path: Path, agent: Any, env: Any, obs_dim: int, best_of_n: int | None = None
) -> Any:
    """The exported policy at ``path`` with ``agent``'s ``act`` (for run_episodes); a
    ``best_of_n`` other than the file's is an error (the file fixes N)."""
    from qscore.api import Policy
    from qscore.envs import original_action_bounds
    from qscore.export import OnnxAgent

    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    onnx_agent = OnnxAgent(path, Policy(agent, *original_action_bounds(env), obs_dim))
    if best_of_n is not None and best_of_n != onnx_agent.samples:
        raise ConfigError(
            f"{path} picks the best of {onnx_agent.samples} samples; drop --best-of-n or"
            f" export again with --best-of-n {best_of_n}"
        )
    return onnx_agent


def _onnx_picking(onnx_agent: Any) -> str:
    """How the exported policy picks its action, for eval's line."""
    from qscore.export import GAUSSIAN

    if onnx_agent.samples > 1:
        return f" (best of {onnx_agent.samples} samples by Q; onnxruntime)"
    if onnx_agent.noise == GAUSSIAN:
        return " (actions sampled from the policy; onnxruntime)"
    return " (onnxruntime)"


def run_export(args: argparse.Namespace) -> int:
    algo = RunConfig.from_dict(_saved_config(args.run_dir)).algo  # options checked before JAX
    if args.best_of_n is not None and algo != "qsm":
        raise ConfigError(f"--best-of-n needs a qsm run; {args.run_dir} is {algo}")
    if args.stochastic and algo != "sac":
        raise ConfigError(
            f"--stochastic needs a sac run; {args.run_dir} is {algo}, whose exported policy is"
            + (" always sampled" if algo == "qsm" else " deterministic")
        )
    from qscore.api import load
    from qscore.export import export_onnx

    policy = load(args.run_dir)
    if args.best_of_n is not None:
        policy = policy.with_options(best_of_n_eval=args.best_of_n)
    path = export_onnx(replace(policy, explore=args.stochastic), args.out)
    sampled = " (sampled)" if args.stochastic else ""
    print(f"{algo} policy{sampled} of {args.run_dir} written to {path}")
    return 0


def run_collect(args: argparse.Namespace) -> int:
    import numpy as np

    from qscore import datasets

    datasets.check_output(args.out, args.overwrite, args.val_fraction)
    if args.replay:
        trajectories = datasets.replay_of_run(args.run_dir)
    else:
        trajectories = datasets.collect_from_run(
            args.run_dir, args.episodes, args.seed, args.noise, args.random_fraction,
            progress=not args.no_progress,
        )  # fmt: skip
    train, val = datasets.write_dataset(args.out, trajectories, args.val_fraction, args.overwrite)
    returns = [sum(t.rewards) for t in trajectories]
    steps = sum(len(t) for t in trajectories)
    print(
        f"{len(trajectories)} episodes, {steps} steps, return {np.mean(returns):.2f} +- "
        f"{np.std(returns):.2f}: written to {train} and {val}"
    )
    return 0


def run_ogbench_data(args: argparse.Namespace) -> int:
    import importlib.util

    from qscore.ogbench_tasks import parse_dataset_name, write_manipulation_dataset

    parse_dataset_name(args.name)
    if importlib.util.find_spec("ogbench") is None:
        raise ConfigError("ogbench-data needs the ogbench package: pip install 'qscore[offline]'")
    train, val = write_manipulation_dataset(
        args.name, args.out, args.episodes, args.seed, args.episode_steps, args.overwrite,
        progress=not args.no_progress,
    )  # fmt: skip
    print(f"{args.name}: written to {train} and {val}")
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    from qscore.sweep import run_sweep

    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")

    def report(result: dict[str, Any]) -> None:
        line = f"{result['status']:>22}  {result['run_dir']}"
        if "error" in result:
            line += f"\n{'':>24}{result['error']}"
        print(line, flush=True)

    try:
        results = run_sweep(
            args.spec,
            args.out,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
            report=report,
        )
    except TrainingInterrupted as error:
        raise TrainingInterrupted(
            f"{error.status}: the sweep stopped (the cell has a checkpoint); run the same"
            " qscore sweep command again to resume it",
            error.status,
        ) from None
    failed = [r for r in results if r["status"] == "failed"]
    print(f"{len(results) - len(failed)} of {len(results)} runs done; {len(failed)} failed")
    return 1 if failed else 0


def _parse_labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if not labels:
        raise argparse.ArgumentTypeError("expected labels like qsm,sac")
    return labels


def _load_curves(
    dirs: list[str], metric: str = "return_mean", labels: list[str] | None = None
) -> list:
    """The curves of ``dirs`` (``LABEL=DIR`` renames a directory's runs; only ``labels`` are
    kept when given); runs without values are named in one warning line, and a label
    matching no run is an error."""
    from qscore.results import load_curves, skipped_message

    skipped: list[Path] = []
    curves = load_curves(dirs, skipped, metric)
    if labels:
        missing = sorted(set(labels) - {c.label for c in curves})
        if missing:
            raise ConfigError(f"no runs labelled {', '.join(missing)}")
        curves = [c for c in curves if c.label in labels]
    if skipped:
        print(skipped_message(skipped), file=sys.stderr)
    return curves


def run_plot(args: argparse.Namespace) -> int:
    from qscore.plot import plot_curves, pyplot

    pyplot()  # a missing matplotlib fails before any reading
    curves = _load_curves(args.dirs, args.metric, args.labels)
    ylabel = "evaluation return" if args.metric == "return_mean" else args.metric
    out = plot_curves(curves, args.out, title=args.title, ylabel=ylabel)
    print(f"curves of {args.metric} written to {out}")
    return 0


def run_table(args: argparse.Namespace) -> int:
    from qscore.table import make_table, rliable

    rliable()  # a missing rliable fails before any reading
    text = make_table(_load_curves(args.dirs, labels=args.labels), args.budget, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"table written to {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from qscore.demo import DEMOS, format_shares, run_multimodal_demo

    if args.name not in DEMOS:
        raise ConfigError(f"unknown demo {args.name!r}; choose one of: {', '.join(DEMOS)}")
    given = {
        "steps": args.steps,
        "seed": args.seed,
        "num_peaks": args.peaks,
        "num_samples": args.samples,
    }
    modes = run_multimodal_demo(
        args.out,
        **{name: value for name, value in given.items() if value is not None},
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=print,
    )
    for line in format_shares(modes):
        print(line)
    out = args.out
    print(f"pictures: {out / 'contours.png'}, {out / 'final_actions.png'}")
    print(f"shares: {out / 'modes.json'}; runs: {out / 'qsm'}, {out / 'sac'}")
    return 0


def run_envs(args: argparse.Namespace) -> int:
    from qscore.envs import available_env_ids, make_env

    for env_id in available_env_ids():
        if not args.all and not env_id.startswith("dmc:"):
            try:
                make_env(env_id).close()
            except Exception:  # noqa: BLE001 - missing extras, unsupported spaces: skip it
                continue
        print(env_id)
    return 0


def _peek(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), if any."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _algo_of(argv: list[str]) -> str:
    """The algorithm whose flags ``qscore train`` accepts: --algo, or the resumed run's."""
    resumed = _peek(argv, "--resume")
    if resumed is not None:
        try:
            return _saved_config(Path(resumed)).get("algo", "qsm")
        except (ValueError, OSError):
            return "qsm"
    algo = _peek(argv, "--algo") or "qsm"
    return algo if algo in ALGORITHM_CONFIGS else "qsm"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_algo_of(argv), _peek(argv, "--preset")).parse_args(argv)
    handlers = {
        "train": run_train,
        "eval": run_eval,
        "export": run_export,
        "collect": run_collect,
        "ogbench-data": run_ogbench_data,
        "sweep": run_sweep_command,
        "plot": run_plot,
        "table": run_table,
        "envs": run_envs,
        "demo": run_demo,
    }
    try:
        return handlers[args.command](args)
    except (ConfigError, EnvError, RunDirError, FileNotFoundError, MemoryError) as error:
        print(f"qscore: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except TrainingDiverged as error:
        print(f"qscore: training diverged: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as error:
        print(f"qscore: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("qscore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
