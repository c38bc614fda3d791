"""The ``qscore`` command line: ``train``, ``eval``, ``export``, ``collect``, ``ogbench-data``,
``sweep``, ``plot``, ``table``, ``demo``, ``envs``. It parses arguments, calls the library and
prints; the work is done by library functions (:func:`qscore.rundir.resumed_config`,
:func:`qscore.api.evaluate_run`, :func:`qscore.export.export_run`,
:func:`qscore.datasets.dataset_from_run`, ...).

Every field of the chosen algorithm's config (:class:`~qscore.config.QSMConfig`,
:class:`~qscore.config.SACConfig` or :class:`~qscore.config.TD3Config`) and of
:class:`~qscore.config.TrainConfig` is a flag (``q_score_scale`` -> ``--q-score-scale``);
flags override the chosen preset. Bad input ends with a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qscore.config import (
    ALGORITHM_CONFIGS,
    DEFAULT_PRESETS,
    PRESETS,
    RunConfig,
    field_doc,
    make_config,
)
from qscore.errors import (
    ConfigError,
    EnvError,
    RunDirError,
    TrainingDiverged,
    TrainingInterrupted,
)
from qscore.rundir import check_run_dir, read_config, resumed_config

if TYPE_CHECKING:
    from qscore.api import EvalResult

USAGE_ERROR = 2
FLAG_ALIASES = {
    "env_id": ["--env"],
    "total_steps": ["--steps"],
    "offline_dataset": ["--offline"],
}
"""Short names for the most used fields, beside their full names."""
AGENT, TRAIN = "agent", "train"
"""Prefixes of the argparse destinations of learner and loop fields."""


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
            help=f"{field_doc(cls, f.name)} ({preset}: {shown})",
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
    parser = OneLineParser(
        prog="qscore", description="Diffusion policies trained with Q-score matching."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands, algo, preset)
    _add_eval_and_export_parsers(commands)
    _add_collect_parser(commands)
    _add_sweep_parser(commands)
    _add_plot_and_table_parsers(commands)
    _add_demo_and_envs_parsers(commands)
    return parser


def _add_train_parser(commands: Any, algo: str, preset: str | None) -> None:
    if preset not in PRESETS[algo]:
        preset = DEFAULT_PRESETS[algo]
    defaults = make_config(preset, algo=algo)
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


def _add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser("sweep", help="run a grid of runs from a TOML spec (resumable)")
    sweep.add_argument("spec", type=Path, help="sweep spec (see qscore.sweep)")
    sweep.add_argument("--out", type=Path, required=True, help="sweep directory")
    sweep.add_argument("--backend", choices=["local", "ray"], default="local")
    sweep.add_argument(
        "--workers", type=int, default=2, help="parallel runs (local pool or Ray CPUs)"
    )
    sweep.add_argument("--address", help="address of an existing Ray cluster (ray backend)")


def _add_plot_and_table_parsers(commands: Any) -> None:
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


def _add_demo_and_envs_parsers(commands: Any) -> None:

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


def run_train(args: argparse.Namespace) -> int:
    if args.resume is None and args.out is not None:
        check_run_dir(Path(args.out), args.overwrite)  # at once, before JAX is imported
    from qscore.training import resume, train_seeds

    overrides = _given_overrides(args)
    if args.resume is not None:
        if args.out is not None or args.overwrite or args.seeds:
            raise ConfigError(
                "--resume continues its own directory; drop --out, --seeds, --overwrite"
            )
        given = {**overrides[AGENT], **overrides[TRAIN]}
        config = resumed_config(args.resume, given, args.preset, args.algo)
        summaries = resume(config, args.resume, progress=not args.no_progress)
        run_dir = args.resume
    else:
        if args.out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
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
    from qscore.api import evaluate_run

    result = evaluate_run(
        args.run_dir, args.episodes, args.seed, args.checkpoint, args.video, args.best_of_n,
        args.policy,
    )  # fmt: skip
    returns = result.returns
    print(
        f"{result.algo} on {result.env_id} at step {result.step}: return "
        f"{returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes"
        f"{_picking(result)}"
    )
    if result.video is not None:
        print(
            f"video of the first episode ({result.video_frames} frames) written to {result.video}"
        )
    return 0


def _picking(result: EvalResult) -> str:
    """How the evaluated policy picked its actions, for eval's line."""
    notes = []
    if result.best_of_n > 1:
        notes.append(f"best of {result.best_of_n} samples by Q")
    elif result.sampled:
        notes.append("actions sampled from the policy")
    if result.runtime == "onnxruntime":
        notes.append("onnxruntime")
    return f" ({'; '.join(notes)})" if notes else ""


def run_export(args: argparse.Namespace) -> int:
    from qscore.export import export_run

    path = export_run(args.run_dir, args.out, args.best_of_n, args.stochastic)
    algo = RunConfig.from_dict(read_config(args.run_dir)).algo
    sampled = " (sampled)" if args.stochastic else ""
    print(f"{algo} policy{sampled} of {args.run_dir} written to {path}")
    return 0


def run_collect(args: argparse.Namespace) -> int:
    import numpy as np

    from qscore.datasets import dataset_from_run

    train, val, trajectories = dataset_from_run(
        args.run_dir, args.out, args.episodes, args.seed, args.noise, args.random_fraction,
        args.replay, args.val_fraction, args.overwrite, progress=not args.no_progress,
    )  # fmt: skip
    returns = [sum(t.rewards) for t in trajectories]
    steps = sum(len(t) for t in trajectories)
    print(
        f"{len(trajectories)} episodes, {steps} steps, return {np.mean(returns):.2f} +- "
        f"{np.std(returns):.2f}: written to {train} and {val}"
    )
    return 0


def run_ogbench_data(args: argparse.Namespace) -> int:
    from qscore.ogbench_tasks import write_manipulation_dataset

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
    """:func:`qscore.results.load_curves`; runs without values are named in one warning."""
    from qscore.results import load_curves, skipped_message

    skipped: list[Path] = []
    curves = load_curves(dirs, skipped, metric, labels)
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
    from qscore.envs import trainable_env_ids

    for env_id in trainable_env_ids(check=not args.all):
        print(env_id)
    return 0


class _FirstPass(argparse.ArgumentParser):
    """The first of two parsing passes: only the options that decide which flags ``train``
    takes; everything else is left for the full parser, errors included."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _train_choices(argv: list[str]) -> tuple[str, str | None]:
    """The algorithm whose flags ``qscore train`` takes and the preset whose values its help
    shows: --algo and --preset, or those of the run that --resume continues."""
    first = _FirstPass(add_help=False)
    first.add_argument("command", nargs="?")
    for flag in ("--algo", "--preset", "--resume"):
        first.add_argument(flag)
    try:
        known, _ = first.parse_known_args(argv)
    except ValueError:
        return "qsm", None
    if known.command != "train":
        return "qsm", None
    algo, preset = known.algo, known.preset
    if known.resume is not None:
        try:
            saved = read_config(known.resume)
        except (ValueError, OSError):
            saved = {}
        algo, preset = saved.get("algo", "qsm"), preset or saved.get("preset")
    return (algo if algo in ALGORITHM_CONFIGS else "qsm"), preset


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(*_train_choices(argv)).parse_args(argv)
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
