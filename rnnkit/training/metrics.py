"""Metrics: language-model figures and the run log (CSV, optional TensorBoard)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

__all__ = ["lm_metrics", "MetricsLog", "COLUMNS", "read_metrics"]

COLUMNS = ["step", "epoch", "split", "loss", "ppl", "bpc", "lr", "tokens_per_s",
           "elapsed_s", "accuracy", "exact_match", "bleu", "ar", "tar", "attention_reg"]
SCALARS = ("loss", "ppl", "bpc", "lr", "tokens_per_s", "accuracy", "exact_match", "bleu",
           "ar", "tar", "attention_reg")


def lm_metrics(loss, level):
    """Mean cross-entropy in nats -> ``{"loss", "ppl"}`` plus ``"bpc"`` (bits per
    character) for character models."""
    out = {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
    if level == "char":
        out["bpc"] = loss / math.log(2.0)
    return out


class MetricsLog:
    """Append-only ``metrics.csv`` (and TensorBoard scalars under ``tb/``).

    On resume, rows after the checkpoint's step are dropped first, so the log of an
    interrupted-and-resumed run reads like one uninterrupted run.
    """

    def __init__(self, out_dir, tensorboard=True, resume_step=None):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(out_dir) / "metrics.csv"
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS)
        if new:
            self.writer.writeheader()
        self.tb = _summary_writer(Path(out_dir) / "tb") if tensorboard else None

    def _truncate(self, step):
        """Keep the complete training and validation rows up to ``step``; a last line cut
        short by a crash or a full disk is dropped. Rewritten beside the log and renamed over it, so a crash
        (or a full disk) here leaves the old log whole."""
        with open(self.path, newline="") as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # a row whose write was cut short
        # a test row comes after the last checkpoint even at its step: the resumed run
        # writes it again
        rows = [r for r in csv.DictReader(lines)
                if None not in r.values() and r["step"].isdigit() and int(r["step"]) <= step
                and r["split"] != "test"]
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def log(self, **row):
        """Write one row (missing columns left empty) and flush."""
        self.writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for key in SCALARS:
                if row.get(key) is not None:
                    self.tb.add_scalar(f"{row['split']}/{key}", row[key], row["step"])

    def close(self):
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _summary_writer(folder):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(folder))


def read_metrics(path):
    """metrics.csv -> list of dicts with numbers parsed (empty cells -> None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k == "split" else (float(v) if v else None))
                         for k, v in row.items()})
    return rows
