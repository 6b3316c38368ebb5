"""Safe loading (issue 21): no load path unpickles, nothing is written outside --out
whatever a run directory's files name, and a directory that is not an rnnkit run is
refused in one line."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.training.checkpoint import (CheckpointError, CheckpointManager,
                                        load_checkpoint, resolve_checkpoint,
                                        save_checkpoint)

SMALL = ["--embed_size=8", "--hidden_size=16", "--num_layers=1", "--batch_size=4",
         "--bptt=10", "--eval_batch_size=2", "--log_every=5", "--progress=off",
         "--tensorboard=false", "--threads=1", "--sample_length=10",
         "--checkpoint_every=5"]
LINE = "a stitch in time saves nine, and a rolling stone gathers no moss at all.\n"


class Payload:
    """Creates ``marker`` when unpickled: the classic pickle code-execution attack."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


@pytest.fixture
def run_dir(tmp_path):
    """A folder ``box/`` holding a corpus and a finished tiny LM run ``box/run``."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "train.txt").write_text(LINE * 10)
    assert main(train_args(box, "--epochs", "1")) == 0
    return box / "run"


def train_args(box, *extra):
    return ["train", "--data", str(box / "train.txt"), "--out", str(box / "run"), *SMALL,
            *extra]


def one_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rnnkit {command}: error: "), err
    return err[0]


def outside_run(root):
    """Every path below ``root`` but outside ``root/box/run``, with its content."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in Path(root).rglob("*")
            if not str(p.relative_to(root)).startswith("box/run")}


def test_no_load_path_in_the_package_can_unpickle():
    package = Path(__file__).resolve().parents[2] / "rnnkit"
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|weights_only\s*=\s*False|"
                         r"allow_pickle\s*=\s*True|import dill|cloudpickle")
    found = [f"{path}:{n}" for path in package.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert found == []


@pytest.mark.parametrize("command", ["sample", "eval", "resume"])
def test_a_checkpoint_crafted_to_run_code_when_unpickled_is_refused(tmp_path, run_dir,
                                                                    capsys, command):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(marker)}, evil)
    torch.load(evil, weights_only=False)  # the payload is live: unpickling runs it
    assert marker.is_dir()
    marker.rmdir()
    # in place of every checkpoint, with a meta.json whose hash matches the payload, and
    # beside them under the names other tools load (model.pt, checkpoint.pt)
    blob = evil.read_bytes()
    manager = CheckpointManager(run_dir / "checkpoints")
    for step in manager.steps():
        checkpoint = manager.path(step)
        (checkpoint / "tensors.safetensors").write_bytes(blob)
        meta = json.loads((checkpoint / "meta.json").read_text())
        meta["tensors_sha256"] = __import__("hashlib").sha256(blob).hexdigest()
        (checkpoint / "meta.json").write_text(json.dumps(meta))
    for name in ("model.pt", "checkpoint.pt", "pytorch_model.bin"):
        (run_dir / name).write_bytes(blob)
        (run_dir / "checkpoints" / name).write_bytes(blob)
    argv = {"sample": ["sample", str(run_dir)],
            "eval": ["eval", str(run_dir), "--data", str(run_dir.parent / "train.txt")],
            "resume": train_args(run_dir.parent, "--resume", "--epochs", "2")}[command]
    assert main(argv) == 2
    line = one_line(capsys, "train" if command == "resume" else command)
    assert "not a valid safetensors file" in line and "tensors.safetensors" in line
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(manager.latest())
    assert not marker.exists()


def _rewrite_meta(checkpoint, change):
    """A checkpoint whose meta.json says something else, hashes made consistent (what
    a deliberate attacker can do, unlike a bit flip)."""
    tensors, meta = load_checkpoint(checkpoint)
    change(meta)
    for key in ("format", "tensors_sha256"):
        meta.pop(key)
    aside = checkpoint.with_name(checkpoint.name + ".old")
    checkpoint.rename(aside)
    save_checkpoint(checkpoint, tensors, meta)
    for path in aside.iterdir():
        path.unlink()
    aside.rmdir()


def test_paths_named_in_a_checkpoint_never_take_a_write_outside_out(tmp_path, run_dir,
                                                                   capsys):
    box = run_dir.parent
    latest = CheckpointManager(run_dir / "checkpoints").latest()

    def point_outside(meta):
        meta["config"]["train"]["out"] = "../escaped"
        meta["model"]["config"]["options"] = {}

    _rewrite_meta(latest, point_outside)
    # a best link and a step-N folder that lead out of the run are ignored
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (run_dir / "checkpoints" / "step-99999999").symlink_to(outside)
    (run_dir / "checkpoints" / "best").unlink()
    (run_dir / "checkpoints" / "best").symlink_to("../../outside")
    before = outside_run(tmp_path)
    assert main(train_args(box, "--resume", "--epochs", "2", "--keep_checkpoints=1")) == 0
    capsys.readouterr()
    assert outside_run(tmp_path) == before
    assert not (tmp_path / "escaped").exists() and not (box / "escaped").exists()
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["out"] == str(run_dir)
    assert main(["sample", str(run_dir), "--length", "5"]) == 0  # best: its own link


@pytest.mark.parametrize("name", ["metrics.csv", "config.json", "results.json",
                                  "checkpoints"])
def test_a_symlink_in_a_run_directory_is_refused(tmp_path, run_dir, capsys, name):
    target = tmp_path / f"target-{name}"
    path = run_dir / name
    if path.is_dir():
        path.rename(target)
    else:
        target.write_bytes(path.read_bytes())
        path.unlink()
    path.symlink_to(target)
    before = {p: p.read_bytes() for p in Path(target).rglob("*") if p.is_file()} \
        if target.is_dir() else target.read_bytes()
    assert main(train_args(run_dir.parent, "--resume", "--epochs", "2")) == 2
    line = one_line(capsys, "train")
    assert f"{name} is a symbolic link" in line
    after = {p: p.read_bytes() for p in Path(target).rglob("*") if p.is_file()} \
        if target.is_dir() else target.read_bytes()
    assert after == before


@pytest.mark.parametrize("make", ["empty", "user", "file", "missing", "foreign_meta"])
@pytest.mark.parametrize("command", ["sample", "eval", "predict"])
def test_a_directory_that_is_not_an_rnnkit_run_is_refused(tmp_path, capsys, make,
                                                          command):
    path = tmp_path / "thing"
    if make == "empty":
        path.mkdir()
    elif make == "user":
        path.mkdir()
        (path / "notes.txt").write_text("my notes")
    elif make == "file":
        path.write_text("my notes")
    elif make == "foreign_meta":
        path.mkdir()
        (path / "meta.json").write_text('{"name": "some other tool"}')
        (path / "tensors.safetensors").write_bytes(b"12345678")
    argv = {"sample": ["sample", str(path)],
            "eval": ["eval", str(path), "--data", str(tmp_path / "x.txt")],
            "predict": ["predict", str(path), "some text"]}[command]
    assert main(argv) == 2
    line = one_line(capsys, command)
    expected = {"empty": "is not an rnnkit run", "user": "is not an rnnkit run",
                "file": "is a file, not an rnnkit run", "missing": "does not exist",
                "foreign_meta": "is not an rnnkit checkpoint"}[make]
    assert expected in line and str(path) in line
    if make == "user":
        assert os.listdir(path) == ["notes.txt"]
