"""Run directories: where ``rnnkit train`` may write, and what is already there.

The rule: rnnkit writes only into a directory it created, an empty one, or one that
already holds an rnnkit run of the same task, recognised by its marker file
``rnnkit-run.json`` (``{"format": "rnnkit-run/1", "task": "lm"}``). Runs written
before the marker existed are recognised by their layout: a ``config.json`` with
rnnkit's four sections beside a ``checkpoints/`` folder holding an rnnkit checkpoint.
Anything else -- a user's folder, a file, a path below a file, an unwritable place, an
empty ``--out`` -- is refused before any data is read, and nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["RunDirError", "MARKER", "check_out_dir", "run_task", "adopt",
           "check_output_file", "task_of_kind", "write_text_atomic", "OWN_NAMES"]

MARKER = "rnnkit-run.json"
MARKER_FORMAT = "rnnkit-run/1"
LM_KINDS = ("char_lm", "word_lm")
_CONFIG_SECTIONS = {"data", "model", "optim", "train"}
# what rnnkit train writes in a run directory: none of them may be a symlink, which
# would take a write out of --out
OWN_NAMES = (MARKER, "config.json", "metrics.csv", "results.json", "curves.png",
             "checkpoints", "tb", "sample.txt")


class RunDirError(ValueError):
    """An output path rnnkit must not (or cannot) write into."""


def task_of_kind(kind):
    """A checkpoint's model kind -> the task that trains it (``char_lm`` -> ``lm``)."""
    return "lm" if kind in LM_KINDS else kind


def _read_json(path):
    """A small JSON file's content, or None when it is missing, large or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _legacy_task(path):
    """The task of a run written before the marker existed, or None."""
    from rnnkit.training.checkpoint import FORMAT, CheckpointManager

    config = _read_json(path / "config.json")
    if not isinstance(config, dict) or not _CONFIG_SECTIONS <= set(config):
        return None
    latest = CheckpointManager(path / "checkpoints").latest()
    meta = _read_json(latest / "meta.json") if latest is not None else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    return task_of_kind(meta.get("model", {}).get("kind"))


def run_task(path):
    """The task of the rnnkit run in directory ``path`` (marker first, then the old
    layout), or None when it holds no rnnkit run."""
    path = Path(path)
    marker = path / MARKER
    if marker.exists():
        data = _read_json(marker)
        if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
            raise RunDirError(f"--out {str(path)!r}: marker file {MARKER} is not an rnnkit "
                              f"run marker (expected format {MARKER_FORMAT!r})")
        return data.get("task")
    return _legacy_task(path)


def _nearest_existing(path):
    """``path`` or its closest existing ancestor; a file on the way is an error."""
    for candidate in [path, *path.parents]:
        if candidate.is_dir():
            return candidate
        if candidate.exists() or candidate.is_symlink():
            if candidate == path:
                raise RunDirError(f"--out {str(path)!r} is an existing file, expected a "
                                  f"directory")
            raise RunDirError(f"--out {str(path)!r} is below {str(candidate)!r}, which is "
                              f"not a directory")
    return Path(".")


def _check_writable(path, what):
    existing = _nearest_existing(path)
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (its nearest existing folder {str(existing)!r})"
        raise RunDirError(f"{what} {str(path)!r} is not writable{where}")


def check_out_dir(out, task):
    """Check that ``rnnkit train`` may write into ``out`` for ``task``; writes nothing.

    Returns the task of the run already there (equal to ``task``) or None when the
    directory is new or empty.
    """
    text = os.fspath(out)
    if not text.strip():
        raise RunDirError("--out must name a directory, got '' (use --out . for the "
                          "current directory only if it holds an rnnkit run or nothing)")
    path = Path(text)
    _check_writable(path, "--out")
    if not path.is_dir():
        return None
    found = run_task(path)
    _check_no_links(path)
    if found is None:
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise RunDirError(f"--out {text!r} exists and is not an rnnkit run (it holds "
                              f"{shown}); rnnkit writes only into a new or empty "
                              f"directory or an rnnkit run, give another --out")
    elif found != task:
        raise RunDirError(f"--out {text!r} holds a {found!r} run, this command trains "
                          f"{task!r}; give another --out")
    return found


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file renamed over it: a crash or a
    full disk leaves the old content whole, never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_no_links(path):
    """RunDirError when one of the names rnnkit writes in a run is a symbolic link."""
    for name in OWN_NAMES:
        if (path / name).is_symlink():
            raise RunDirError(f"--out {str(path)!r}: {name} is a symbolic link (to "
                              f"{os.readlink(path / name)!r}); rnnkit writes only inside "
                              f"--out, remove the link or give another --out")


def adopt(out, task):
    """Create ``out`` (if needed) and mark it as an rnnkit run of ``task``."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        tmp = path / f".{MARKER}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps({"format": MARKER_FORMAT, "task": task}) + "\n")
        os.replace(tmp, marker)
    return path


def check_output_file(path, what):
    """Check that a file can be written at ``path`` before the work that produces it:
    not a directory, its folder exists and is writable."""
    text = os.fspath(path)
    if not text.strip():
        raise RunDirError(f"{what} must name a file, got ''")
    path = Path(text)
    if path.is_dir():
        raise RunDirError(f"{what} {text!r} is a directory, expected a file path")
    if path.exists() and not path.is_file():
        raise RunDirError(f"{what} {text!r} is not a regular file")
    parent = path.parent
    if not parent.is_dir():
        raise RunDirError(f"{what} {text!r}: folder {str(parent)!r} does not exist")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise RunDirError(f"{what} {text!r} is not writable")
    return path
