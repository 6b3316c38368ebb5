"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory ``checkpoints/step-00001234/`` holding

* ``tensors.safetensors`` -- model weights (``model.*``), optimizer state
  (``optim.*``), RNG states and the carried recurrent state (``rng.*``, ``hidden.*``);
* ``meta.json`` -- config, vocabulary, progress, schedule and everything else that is
  plain data, plus the SHA-256 of the tensors file so that corruption is detected.

The two files vouch for each other: ``meta.json`` carries the SHA-256 of the tensors
file, and the tensors file's own header carries the SHA-256 of the meta data, so a bit
flipped in either file (or a tensors file from another checkpoint) is a CheckpointError,
never a silent load of other numbers.

It is written into a temporary directory (each file flushed and fsync'ed), then renamed
into place, so a crash leaves either the old set of checkpoints or the new one, never a
half-written checkpoint under a real name; a write that fails (a full disk) removes its
temporary directory and raises a CheckpointError saying the earlier checkpoints are
intact. A checkpoint replaced or pruned is first renamed to a hidden name, so a crash
while deleting it never leaves a partial one under a real name. ``best`` and ``latest``
are symlinks swapped with an atomic ``os.replace``; only links to a ``step-N`` folder
beside them and only real (not symlinked) ``step-N`` folders count. Loading reads JSON
and safetensors only: nothing is unpickled.
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


def _meta_digest(meta):
    """SHA-256 of the meta data as JSON reads it back (key order and tuples vs lists do
    not matter), without the ``tensors_sha256`` entry that refers back to the tensors."""
    plain = json.loads(json.dumps(meta))
    plain.pop("tensors_sha256", None)
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _header_metadata(blob):
    """The ``__metadata__`` of a safetensors file's JSON header ({} when absent)."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    return header.get("__metadata__") or {}


def save_checkpoint(directory, tensors, meta):
    """Write ``tensors`` (name -> Tensor) and ``meta`` (JSON data) atomically into
    ``directory``, which must not exist yet. Returns the directory as a Path."""
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        raise CheckpointError(f"checkpoint {str(directory)!r} already exists")
    meta = dict(meta, format=FORMAT)
    blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                            metadata={"meta_sha256": _meta_digest(meta)})
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    try:
        _remove(tmp)
        tmp.mkdir(parents=True)
        _write_file(tmp / TENSORS, blob)
        _write_file(tmp / META, json.dumps(meta, indent=1).encode())
        _fsync_dir(tmp)
        os.rename(tmp, directory)
        _fsync_dir(directory.parent)
    except OSError as e:
        _remove(tmp, missing_ok=True)
        why = e.strerror or str(e)
        raise CheckpointError(f"could not write checkpoint {str(directory)!r}: {why} (a full "
                              f"disk or a file-size limit?); the earlier checkpoints are "
                              f"intact, free some space and continue with --resume"
                              ) from None
    return directory


def _remove(path, missing_ok=True):
    """Delete a file, link or folder tree; errors only when ``missing_ok`` is False."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    except OSError:
        if not missing_ok:
            raise


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
        header = _header_metadata(blob)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {str(tensors_path)!r} is not a valid "
                              f"safetensors file: {e}") from None
    # checkpoints written before the meta digest existed have none; when there is one,
    # meta.json must be the one written with these tensors
    if "meta_sha256" in header and header["meta_sha256"] != _meta_digest(meta):
        raise CheckpointError(f"checkpoint file {str(meta_path)!r} is corrupted or "
                              f"belongs to another checkpoint: its content does not match "
                              f"the SHA-256 recorded in {TENSORS}")
    return tensors, meta


def resolve_checkpoint(path, prefer="best"):
    """A checkpoint directory from a run directory, a ``checkpoints/`` directory or a
    checkpoint itself; ``prefer`` is ``"best"`` or ``"latest"``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a file, not an rnnkit run (a directory "
                              f"with checkpoints/) or checkpoint (a directory with {META})")
    if (path / META).exists() or (path / TENSORS).exists():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    manager = CheckpointManager(folder)
    found = manager.best() if prefer == "best" else None
    found = found or manager.latest()
    if found is None:
        raise CheckpointError(f"{str(path)!r} is not an rnnkit run: no checkpoints/step-N "
                              f"checkpoint in it (give the --out of an rnnkit train run, or "
                              f"one of its checkpoints)")
    return found


class CheckpointManager:
    """The ``checkpoints/`` folder of a run: numbered checkpoints, the last ``keep_last``
    kept, plus the best one (by validation loss) wherever it is."""

    def __init__(self, folder, keep_last=3):
        self.folder = Path(folder)
        self.keep_last = keep_last

    def steps(self):
        """Step numbers of the complete checkpoints, oldest first (real folders only:
        rnnkit never follows a ``step-N`` symlink out of the run)."""
        if not self.folder.is_dir():
            return []
        found = (_STEP_DIR.match(p.name) for p in self.folder.iterdir()
                 if p.is_dir() and not p.is_symlink())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step):
        return self.folder / f"step-{step:08d}"

    def latest(self):
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def best(self):
        """The checkpoint ``best`` links to, when it is one of this folder's own."""
        link = self.folder / "best"
        if not link.is_symlink():
            return None
        match = _STEP_DIR.match(os.readlink(link))
        if not match or int(match.group(1)) not in self.steps():
            return None
        return self.path(int(match.group(1))).resolve()

    def save(self, step, tensors, meta, is_best=False):
        """Write checkpoint ``step``, point ``latest`` (and ``best``) at it, prune."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()
        target = self.path(step)
        if target.exists() or target.is_symlink():
            # a re-run of the same step after resume: the new one is written beside it
            # first, so a crash in between keeps a complete checkpoint
            staged = save_checkpoint(self.folder / f".{target.name}.new", tensors, meta)
            self._discard(target)
            os.rename(staged, target)
            _fsync_dir(self.folder)
        else:
            save_checkpoint(target, tensors, meta)
        self._point("latest", target)
        if is_best:
            self._point("best", target)
        self._prune()
        return target

    def _discard(self, path):
        """Rename a checkpoint to a hidden name, then delete it: a crash half-way through
        the deletion never leaves a partial checkpoint under a real name."""
        trash = self.folder / f".trash-{path.name}-{os.getpid()}"
        _remove(trash)
        os.rename(path, trash)
        _remove(trash)

    def _clean_leftovers(self):
        """Temporary and half-deleted folders a killed writer left behind (one run has
        one writer, so none of them is in use)."""
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") and (".tmp-" in entry.name or entry.name.startswith(
                    ".trash-") or entry.name.endswith(".new")):
                _remove(entry)

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
                self._discard(path)


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
