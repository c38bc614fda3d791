"""The layout of run directories, in one place.

* a run directory holds ``config.json`` (the config and the run's metadata),
  ``summary.json``, ``train.csv``, ``eval.csv``, ``tensorboard/`` and ``checkpoints/``;
* a multi-seed run directory holds ``seeds.json`` and one run directory ``seed_S/`` per
  seed;
* a sweep directory holds ``sweep.json`` and one run directory per cell at
  ``ENV/LABEL/seed_S/`` (``:`` in an env id becomes ``_``).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from qscore.atomic import atomic_write_json
from qscore.config import ALGORITHM_CONFIGS, RunConfig, TrainConfig, make_config
from qscore.errors import (  # noqa: F401 (TrainingDiverged, TrainingInterrupted re-exported)
    ConfigError,
    RunDirError,
    TrainingDiverged,
    TrainingInterrupted,
)

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
SEEDS_FILE = "seeds.json"
"""Marks a multi-seed run directory: ``{"seeds": [...], "algo": ...}``."""
SWEEP_FILE = "sweep.json"
"""Marks a sweep directory: its spec and cells."""
PACKAGES = ("qscore", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco")
"""Packages whose versions config.json records and a resume must match."""
RUN_DIR_HINT = "pass --resume to continue it, --overwrite to replace it, or choose another --out"


def seed_dirs(run_dir: Path, seeds: list[int]) -> list[Path]:
    """The run directories of the seeds of a multi-seed run."""
    return [Path(run_dir) / f"seed_{seed}" for seed in seeds]


def run_seeds(run_dir: str | Path) -> list[int] | None:
    """The seeds of a multi-seed run directory, or None for a single-seed one."""
    path = Path(run_dir) / SEEDS_FILE
    return json.loads(path.read_text())["seeds"] if path.is_file() else None


def write_seeds(run_dir: Path, seeds: list[int], algo: str) -> None:
    atomic_write_json(Path(run_dir) / SEEDS_FILE, {"seeds": seeds, "algo": algo})


def cell_dir(sweep_dir: str | Path, env_id: str, label: str, seed: int) -> Path:
    """The run directory of one sweep cell."""
    return Path(sweep_dir) / env_id.replace(":", "_") / label / f"seed_{seed}"


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a single-seed run, or of the first seed of a multi-seed run."""
    run_dir = Path(run_dir)
    seeds = run_seeds(run_dir)
    path = (seed_dirs(run_dir, seeds)[0] if seeds else run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return json.loads(path.read_text())


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """config.json: the run's config and its metadata (:func:`run_metadata`)."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, {**config, **run_metadata()})


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / SUMMARY_FILE, summary)


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the qscore source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def run_metadata() -> dict[str, Any]:
    import jax

    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax_backend": jax.default_backend(),
        "command": sys.argv,
    }


def check_run_dir(run_dir: Path, overwrite: bool, hint: str = RUN_DIR_HINT) -> None:
    """Refuse a ``run_dir`` that is a file, or that already holds files unless ``overwrite``
    (the error ends with ``hint``, what the user can do instead)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(f"run directory {run_dir} already exists and is not empty; {hint}")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create ``run_dir`` after :func:`check_run_dir` (emptying it when ``overwrite``)."""
    check_run_dir(run_dir, overwrite)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def resumed_config(
    run_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    preset: str | None = None,
    algo: str | None = None,
) -> RunConfig:
    """The saved config of the run at ``run_dir``, to resume it with, checked against what the
    caller asks for and the installed packages.

    ``overrides`` names fields of the run's algorithm config or of :class:`TrainConfig`
    (``{"total_steps": 300}``); only ``total_steps`` may differ from the run's (to extend
    it), and a ``seed`` is ignored (each run keeps its own). ``preset`` and ``algo``, when
    given, must be the run's. A different version of a package in :data:`PACKAGES` than the
    run recorded is an error too, since results depend on them: each refusal is a
    :class:`ConfigError` naming the difference.
    """
    run_dir = Path(run_dir)
    saved = read_config(run_dir)
    config = RunConfig.from_dict(saved)
    steps = _check_overrides(run_dir, config, overrides or {})
    for name, given, ran in (("preset", preset, config.preset), ("algo", algo, config.algo)):
        if given is not None and given != ran:
            raise ConfigError(f"cannot resume {run_dir} with {name} {given!r}: it ran {ran!r}")
    for package, version in package_versions().items():
        recorded = saved.get("versions", {}).get(package)
        if recorded != version:
            raise ConfigError(
                f"cannot resume {run_dir}: it ran with {package} {recorded}, "
                f"this environment has {version}"
            )
    if steps is None:
        return config
    train = {**asdict(config.train), "total_steps": steps}
    return make_config(config.preset, asdict(config.agent), train, config.algo)


def _check_overrides(run_dir: Path, config: RunConfig, overrides: dict[str, Any]) -> int | None:
    """The ``total_steps`` among ``overrides`` (None if absent), after refusing any other
    field whose value differs from the run's (``seed`` aside)."""
    sections = {f.name: config.agent for f in fields(ALGORITHM_CONFIGS[config.algo])}
    sections.update({f.name: config.train for f in fields(TrainConfig)})
    unknown = sorted(set(overrides) - set(sections))
    if unknown:
        raise ConfigError(
            f"cannot resume {run_dir}: unknown {config.algo} or training field(s): "
            + ", ".join(unknown)
        )
    for name, value in overrides.items():
        ran = getattr(sections[name], name)
        if isinstance(ran, tuple) and isinstance(value, list):
            value = tuple(value)  # widths given as a list, as in config.json
        if name not in ("total_steps", "seed") and ran != value:
            raise ConfigError(
                f"cannot resume {run_dir} with a different config: {name} is "
                f"{ran!r} in the run, {value!r} given"
            )
    return overrides.get("total_steps")
