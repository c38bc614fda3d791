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

    @classmethod
    def resume(cls, path: str | Path, last_step: int, columns: list[str] | None = None) -> CsvLog:
        """A log continuing ``path``: its rows up to ``last_step`` are kept, later ones dropped
        (they were written after the checkpoint the run continues from)."""
        log = cls(path, columns)
        if log.path.is_file():
            for row in read_csv(log.path):
                if int(row["step"]) <= last_step:
                    log.append_row(row)
        return log

    def append_row(self, row: dict[str, Any]) -> None:
        """Add a row in memory only (the next :meth:`append` writes it)."""
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(dict(row))

    def append(self, row: dict[str, Any]) -> None:
        self.append_row(row)
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

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        # purge_step hides events a crashed run wrote after the checkpoint it resumes from.
        self.writer = SummaryWriter(logdir=str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
