"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory ``checkpoints/step-00001234/`` holding

* ``tensors.safetensors`` -- model weights (``model.*``), optimizer state
  (``optim.*``), RNG states and the carried recurrent state (``rng.*``, ``hidden.*``);
* ``meta.json`` -- config, vocabulary, progress, schedule and everything else that is
  plain data, plus the SHA-256 of the tensors file so that corruption is detected.

It is written into a temporary directory (each file flushed and fsync'ed), then renamed
into place, so a crash leaves either the old set of checkpoints or the new one, never a
half-written checkpoint under a real name. ``best`` and ``latest`` are symlinks swapped
with an atomic ``os.replace``. Loading reads JSON and safetensors only: nothing is
unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

__all__ = [
    "CheckpointError", "CheckpointManager", "FORMAT", "load_checkpoint",
    "resolve_checkpoint", "save_checkpoint", "flatten_optimizer_state",
    "unflatten_optimizer_state", "split_shared", "join_shared", "load_model_state",
]

FORMAT = "rnnkit-checkpoint/1"
TENSORS = "tensors.safetensors"
META = "meta.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupted or of another kind."""


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory, tensors, meta):
    """Write ``tensors`` (name -> Tensor) and ``meta`` (JSON data) atomically into
    ``directory``, which must not exist yet. Returns the directory as a Path."""
    directory = Path(directory)
    if directory.exists():
        raise CheckpointError(f"checkpoint {str(directory)!r} already exists")
    blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    meta = dict(meta, format=FORMAT, tensors_sha256=hashlib.sha256(blob).hexdigest())
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_file(tmp / TENSORS, blob)
    _write_file(tmp / META, json.dumps(meta, indent=1).encode())
    _fsync_dir(tmp)
    os.rename(tmp, directory)
    _fsync_dir(directory.parent)
    return directory


def load_checkpoint(directory):
    """Read a checkpoint directory -> ``(tensors, meta)``; raises CheckpointError naming
    the file and what is wrong with it."""
    directory = Path(directory)
    meta_path, tensors_path = directory / META, directory / TENSORS
    for path in (meta_path, tensors_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {str(path)!r} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file {str(meta_path)!r} is not valid JSON "
                              f"(truncated or corrupted): {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint file {str(meta_path)!r} is not an rnnkit "
                              f"checkpoint (expected format {FORMAT!r})")
    blob = tensors_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
        raise CheckpointError(f"checkpoint file {str(tensors_path)!r} is truncated or "
                              f"corrupted: its SHA-256 does not match {META}")
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {str(tensors_path)!r} is not a valid "
                              f"safetensors file: {e}") from None
    return tensors, meta


def resolve_checkpoint(path, prefer="best"):
    """A checkpoint directory from a run directory, a ``checkpoints/`` directory or a
    checkpoint itself; ``prefer`` is ``"best"`` or ``"latest"``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    if (path / META).exists() or (path / TENSORS).exists():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    manager = CheckpointManager(folder)
    found = manager.best() if prefer == "best" else None
    found = found or manager.latest()
    if found is None:
        raise CheckpointError(f"no checkpoint found in {str(path)!r}")
    return found


class CheckpointManager:
    """The ``checkpoints/`` folder of a run: numbered checkpoints, the last ``keep_last``
    kept, plus the best one (by validation loss) wherever it is."""

    def __init__(self, folder, keep_last=3):
        self.folder = Path(folder)
        self.keep_last = keep_last

    def steps(self):
        """Step numbers of the complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = (_STEP_DIR.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step):
        return self.folder / f"step-{step:08d}"

    def latest(self):
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def best(self):
        link = self.folder / "best"
        return link.resolve() if link.is_symlink() and link.resolve().exists() else None

    def save(self, step, tensors, meta, is_best=False):
        """Write checkpoint ``step``, point ``latest`` (and ``best``) at it, prune."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(step)
        if target.exists():  # a re-run of the same step after resume: replace it
            shutil.rmtree(target)
        save_checkpoint(target, tensors, meta)
        self._point("latest", target)
        if is_best:
            self._point("best", target)
        self._prune()
        return target

    def _point(self, name, target):
        tmp = self.folder / f".{name}.tmp-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target.name, tmp)
        os.replace(tmp, self.folder / name)

    def _prune(self):
        best = self.best()
        for step in self.steps()[:-self.keep_last] if self.keep_last > 0 else []:
            path = self.path(step)
            if best is None or path.resolve() != best:
                shutil.rmtree(path)


def split_shared(state_dict):
    """Drop tensors that share storage with an earlier entry (tied weights), which
    safetensors refuses to store twice. Returns ``(tensors, aliases)``."""
    tensors, aliases, seen = {}, {}, {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
               tuple(tensor.shape), tuple(tensor.stride()))
        if key in seen and tensor.numel() > 0:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            tensors[name] = tensor
    return tensors, aliases


def join_shared(tensors, aliases):
    """Inverse of :func:`split_shared`."""
    full = dict(tensors)
    for alias, name in aliases.items():
        full[alias] = tensors[name]
    return full


def load_model_state(model, tensors, meta, path):
    """Load a checkpoint's ``model.*`` tensors into ``model``; a mismatch is a
    CheckpointError naming the checkpoint."""
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(join_shared(weights, meta["aliases"]))
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit its own model "
                              f"config: {str(e).splitlines()[0]}") from None
    return model


def flatten_optimizer_state(state_dict):
    """torch optimizer state_dict -> ``(tensors, plain)``: tensors keyed
    ``"{param}.{name}"``, everything else as JSON-ready data."""
    tensors, plain_state = {}, {}
    for index, entry in state_dict["state"].items():
        plain_state[str(index)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                plain_state[str(index)][name] = value
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(tensors, plain):
    """Inverse of :func:`flatten_optimizer_state`."""
    state = {int(i): dict(entry) for i, entry in plain["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g)
              for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}
