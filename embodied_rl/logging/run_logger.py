"""One logger for a run: every metric goes to TensorBoard and `metrics.csv`; summaries go to the console.

Metrics may be passed as tensors; they are turned into floats here, once per logging call, so training
code never synchronises with the device just to log.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from embodied_rl.files import atomic_write


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().cpu())
    return float(value)


class RunLogger:
    """Writes scalars to `<run_dir>/metrics.csv` (one row per call, wide format) and TensorBoard.

    Rows are keyed by `step`; on resume, `truncate_after(step)` drops rows logged after the checkpoint
    so curves never hold duplicated steps (TensorBoard hides them through the writer's `purge_step`).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, console: bool = True):
        self.run_dir = Path(run_dir)  # created at the first write: a logger that never logs leaves no folder
        self.csv_path = self.run_dir / "metrics.csv"
        self.console = console
        self._rows: list[dict[str, float]] = []
        self._columns: list[str] = ["step"]
        if self.csv_path.exists():
            self._read_existing_csv()
        self.tensorboard = tensorboard
        self._writer = None  # opened at the first scalar, after any `truncate_after`
        self._purge_step: int | None = None

    def _read_existing_csv(self) -> None:
        with self.csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            self._columns = list(reader.fieldnames or ["step"])
            self._rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in reader]

    def truncate_after(self, step: int) -> None:
        """Forget rows logged after `step` (used when resuming from a checkpoint taken at `step`)."""
        self._rows = [row for row in self._rows if row.get("step", -1) <= step]
        self._rewrite_csv()
        self.close()  # the next writer hides the events after `step` from TensorBoard
        self._purge_step = step + 1

    def _tensorboard(self):
        if self._writer is None and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = self.run_dir / "tb"
            purge_step = self._purge_step
            if purge_step is None and not any(log_dir.glob("events.out.tfevents.*")):
                # A new run's restart marker at step 0 hides nothing; it makes a resume's marker the run's second,
                # and TensorBoard's Python loader (--load_fast=false) acts on a run's second marker, not its first.
                purge_step = 0
            self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
            self._purge_step = None  # purge once: a later writer must keep what this one writes
        return self._writer

    def log(self, metrics: Mapping[str, Any], step: int, prefix: str = "") -> dict[str, float]:
        """Log `metrics` at `step` under `prefix/` and return them as floats."""
        values = {f"{prefix}/{k}" if prefix else k: _to_float(v) for k, v in metrics.items()}
        writer = self._tensorboard()
        if writer is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    writer.add_scalar(key, value, step)
        row = {"step": float(step), **values}
        self._rows.append(row)
        new_columns = [k for k in values if k not in self._columns]
        if new_columns:
            self._columns += new_columns
            self._rewrite_csv()
        else:
            with self.csv_path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(self._format(row))
        return values

    def summary(self, text: str) -> None:
        """One human-readable line (e.g. per evaluation)."""
        if self.console:
            from tqdm import tqdm

            tqdm.write(text)

    def warning(self, text: str) -> None:
        """One line on stderr, whatever `console` says: something the user should know about the run."""
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _format(self, row: Mapping[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {k: (f"{v:.6g}" if k != "step" else int(v)) for k, v in row.items()}
        return out

    def _rewrite_csv(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.csv_path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            for row in self._rows:
                writer.writerow(self._format(row))
