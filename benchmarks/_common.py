"""What the benchmark scripts share: the start of their command line, the machine header of
their JSON files, writing those files, and the median time of a short call.

The scripts import it as ``_common``: run as ``python benchmarks/NAME.py``, this folder is
on ``sys.path`` (tests/test_benchmarks.py puts it there for the scripts it loads). JAX is
imported only when a header asks about it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JSON_HELP = "write the figures to this JSON file"


def make_parser(doc: str | None, json_help: str | None = JSON_HELP) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` (the script's docstring),
    with ``--json PATH`` unless ``json_help`` is None."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    if json_help is not None:
        parser.add_argument("--json", type=Path, help=json_help)
    return parser


def _jax() -> Any:
    import jax

    return jax


MACHINE_FIELDS: dict[str, Callable[[], Any]] = {
    "device": lambda: str(_jax().devices()[0]),
    "backend": lambda: _jax().default_backend(),
    "cpu_count": os.cpu_count,
    "platform": platform.platform,
    "jax": lambda: _jax().__version__,
}
"""How each field of :func:`machine_header` is found."""
DEFAULT_FIELDS = ("device", "cpu_count", "platform", "jax")


def machine_header(*fields: str) -> dict[str, Any]:
    """The head of a results file: the named facts about this machine and its software, in
    that order (default :data:`DEFAULT_FIELDS`); a name that is not in
    :data:`MACHINE_FIELDS` is a package, whose version is given (``onnxruntime``)."""
    header = {}
    for name in fields or DEFAULT_FIELDS:
        find = MACHINE_FIELDS.get(name)
        header[name] = find() if find else importlib.import_module(name).__version__
    return header


def write_json(path: Path | None, results: Any) -> None:
    """Write ``results`` as indented JSON to ``path`` (its folder made), unless it is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def wall_ms(call: Callable[[], Any]) -> float:
    """Wall time of one call of ``call``, in milliseconds (``call`` must wait for its result)."""
    start = time.perf_counter()
    call()
    return 1e3 * (time.perf_counter() - start)


def median_us(call: Callable[[], Any], repeats: int, warmup: int = 10) -> float:
    """Median wall time of ``call`` over ``repeats`` calls after ``warmup`` untimed ones, in
    microseconds."""
    for _ in range(warmup):
        call()
    return 1e3 * statistics.median(wall_ms(call) for _ in range(repeats))
