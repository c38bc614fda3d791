"""Run logs: CSV files rewritten atomically, and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from qscore.atomic import atomic_write_text


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


class CsvLog:
    """A CSV file that gains a row at a time; every write replaces the file atomically.

    Columns are the union of the rows' keys, in order of first appearance; a row lacking
    a column leaves it empty. The rows stay in memory (a run logs thousands, not millions).
    """

    def __init__(self, path: str | Path, columns: list[str] | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] = list(columns or [])
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(dict(row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _format(v) for k, v in r.items()})
        atomic_write_text(self.path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class TensorBoard:
    """Scalars for TensorBoard, written under ``RUN_DIR/tensorboard``."""

    def __init__(self, log_dir: str | Path) -> None:
        self.writer = SummaryWriter(logdir=str(log_dir))

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
