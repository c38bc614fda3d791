"""The ``qscore`` command line: ``qscore train`` and ``qscore eval``.

Every field of :class:`~qscore.config.QSMConfig` and :class:`~qscore.config.TrainConfig`
is a flag (``q_score_scale`` -> ``--q-score-scale``); flags override the chosen preset.
Bad input ends with a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from qscore.config import PRESETS, ConfigError, QSMConfig, RunConfig, TrainConfig, make_config
from qscore.envs import EnvError

USAGE_ERROR = 2
FLAG_ALIASES = {"env_id": ["--env"], "total_steps": ["--steps"]}
"""Short names for the most used fields, beside their full names."""


def _field_doc(cls: type, name: str) -> str:
    """The docstring under a dataclass field, taken from the class source (for --help)."""

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return ""
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:") and i + 1 < len(lines):
            doc = lines[i + 1].strip()
            if doc.startswith('"""'):
                return doc.strip('"')
    return ""


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected widths like 256,256, got {text!r}") from error


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(default: Any) -> Any:
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, tuple):
        return _parse_widths
    return type(default)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, group_title: str) -> None:
    """One flag per dataclass field; defaults are suppressed so only given flags override."""
    group = parser.add_argument_group(group_title)
    for f in fields(cls):
        default = getattr(cls(), f.name)
        names = FLAG_ALIASES.get(f.name, []) + ["--" + f.name.replace("_", "-")]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            *names,
            dest=f"{cls.__name__}.{f.name}",
            type=_flag_type(default),
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{_field_doc(cls, f.name)} (default: {shown})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qscore", description="Diffusion policies trained with Q-score matching."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an agent; writes a run directory")
    train.add_argument("--algo", default="qsm", choices=["qsm"], help="learning algorithm")
    train.add_argument("--preset", default="paper", help=f"one of: {', '.join(PRESETS)}")
    train.add_argument("--out", type=Path, help="run directory to create")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run from its newest checkpoint (--steps may extend it)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_flags(train, QSMConfig, "learner (QSMConfig)")
    add_config_flags(train, TrainConfig, "training loop (TrainConfig)")

    evaluate = commands.add_parser("eval", help="evaluate a trained run's final checkpoint")
    evaluate.add_argument("run_dir", type=Path, help="a run directory written by qscore train")
    evaluate.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    evaluate.add_argument(
        "--checkpoint", type=Path, help="checkpoint directory (default: the newest)"
    )
    evaluate.add_argument("--video", type=Path, help="write the first episode to this .mp4")
    return parser


def _given_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {QSMConfig.__name__: {}, TrainConfig.__name__: {}}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in overrides:
            overrides[section][name] = value
    return overrides


def resume_config(args: argparse.Namespace) -> RunConfig:
    """The run's saved config, checked against the flags given and the installed packages.

    Only ``--steps`` may differ (to extend a run); any other differing flag or a different
    version of a package the results depend on is an error.
    """
    from qscore.train import RunDirError, package_versions

    run_dir = args.resume
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise RunDirError(f"cannot resume {run_dir}: it is not a run directory (no config.json)")
    saved = json.loads(config_path.read_text())
    config = RunConfig.from_dict(saved)
    sections = {"QSMConfig": config.agent, "TrainConfig": config.train}
    steps = None
    for section, values in _given_overrides(args).items():
        for name, value in values.items():
            if name == "total_steps":
                steps = value
            elif getattr(sections[section], name) != value:
                raise ConfigError(
                    f"cannot resume {run_dir} with a different config: {name} is "
                    f"{getattr(sections[section], name)!r} in the run, {value!r} given"
                )
    if args.preset != "paper" and args.preset != config.preset:
        raise ConfigError(
            f"cannot resume {run_dir} with preset {args.preset!r}: it ran {config.preset!r}"
        )
    for package, version in package_versions().items():
        recorded = saved.get("versions", {}).get(package)
        if recorded != version:
            raise ConfigError(
                f"cannot resume {run_dir}: it ran with {package} {recorded}, "
                f"this environment has {version}"
            )
    if steps is not None:
        config = make_config(
            config.preset, asdict(config.agent), {**asdict(config.train), "total_steps": steps}
        )
    return config


def run_train(args: argparse.Namespace) -> int:
    from qscore.train import resume, train

    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise ConfigError("--resume continues its own directory; drop --out and --overwrite")
        config = resume_config(args)
        summary = resume(config, args.resume, progress=not args.no_progress)
        run_dir = args.resume
    else:
        if args.out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
        overrides = _given_overrides(args)
        config = make_config(args.preset, overrides["QSMConfig"], overrides["TrainConfig"])
        summary = train(config, args.out, overwrite=args.overwrite, progress=not args.no_progress)
        run_dir = args.out
    final = summary["final_eval"]
    print(
        f"finished {config.train.total_steps} steps of {config.train.env_id}: final eval return "
        f"{final['return_mean']:.2f} +- {final['return_std']:.2f}; run directory {run_dir}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import imageio.v2 as imageio
    import jax
    import numpy as np

    from qscore.agents.qsm import create_qsm
    from qscore.checkpoint import latest_checkpoint, load_agent
    from qscore.envs import make_env, space_dims
    from qscore.evaluate import run_episodes

    config_path = args.run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{args.run_dir} is not a run directory (no config.json)")
    if args.episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    config = RunConfig.from_dict(json.loads(config_path.read_text()))
    env = make_env(config.train.env_id, render_mode="rgb_array" if args.video else None)
    obs_dim, action_dim = space_dims(env)
    template = create_qsm(config.agent, obs_dim, action_dim, config.train.seed)
    checkpoint = args.checkpoint or latest_checkpoint(args.run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{args.run_dir} has no checkpoint")
    agent, step = load_agent(checkpoint, template)
    frames: list[np.ndarray] | None = [] if args.video else None
    returns = run_episodes(
        agent, env, args.episodes, args.seed, jax.random.PRNGKey(args.seed), frames
    )
    print(
        f"{config.train.env_id} at step {step}: return {returns.mean():.2f} +- "
        f"{returns.std():.2f} over {args.episodes} episodes"
    )
    if args.video:
        fps = env.metadata.get("render_fps", 30)
        args.video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimsave(args.video, frames, fps=fps, macro_block_size=1)
        print(f"video of the first episode ({len(frames)} frames) written to {args.video}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from qscore.train import RunDirError, TrainingDiverged, TrainingInterrupted

    args = build_parser().parse_args(argv)
    handlers = {"train": run_train, "eval": run_eval}
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
