"""Issue 22: the CLI never overwrites a user's files, and every bad input ends in one
line on stderr naming the argument or file, exit status 2, no traceback, and every file
around it unchanged (SHA-256 of each file before and after)."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from rnnkit.cli import main
from rnnkit.training.checkpoint import CheckpointManager
from rnnkit.training.rundir import MARKER

SMALL = ["--embed_size=8", "--hidden_size=16", "--num_layers=1", "--batch_size=4",
         "--bptt=10", "--eval_batch_size=2", "--log_every=5", "--progress=off",
         "--tensorboard=false", "--threads=1", "--sample_length=10", "--warmup_steps=0"]
LINE = "to be, or not to be, that is the question: whether 'tis nobler in the mind\n"


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    """One kernel, no C++ build inside a subprocess's time budget (as tests/test_cli.py)."""
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


def snapshot(folder):
    """relative path -> SHA-256 of every file below ``folder`` (symlinks by target)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as f:
                    found[key] = hashlib.sha256(f.read()).hexdigest()
    return found


def one_line_error(capsys, command, *fragments):
    """The single stderr line of a refused command; checks it names ``fragments``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"rnnkit {command}: error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def refused(capsys, argv, folder, *fragments):
    """Run ``argv``: exit 2, one line naming ``fragments``, ``folder`` unchanged."""
    before = snapshot(folder)
    assert main(argv) == 2
    line = one_line_error(capsys, argv[0], *fragments)
    assert snapshot(folder) == before
    return line


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """A folder with a corpus and a finished tiny LM run (shared: tests only read it)."""
    root = tmp_path_factory.mktemp("space")
    (root / "train.txt").write_text(LINE * 12)
    (root / "other.txt").write_text(LINE * 12)
    os.environ["RNNKIT_KERNEL"] = "bptt"
    try:
        rc = main(["train", "--data", str(root / "train.txt"), "--out", str(root / "run"),
                   "--epochs", "1", *SMALL])
    finally:
        del os.environ["RNNKIT_KERNEL"]
    assert rc == 0
    return root


def train_args(space, out, *extra):
    return ["train", "--data", str(space / "train.txt"), "--out", str(out), "--epochs", "1",
            *SMALL, *extra]


# ----------------------------------------------------------------- files lost or changed
def test_a_users_folder_is_never_written_into(tmp_path, space, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in (("config.json", '{"mine": 1}'), ("results.json", "[1]"),
                       ("sample.txt", "my text")):
        (folder / name).write_text(text)
    refused(capsys, train_args(space, folder), tmp_path, "--out", str(folder),
            "not an rnnkit run", "config.json")


def test_empty_out_is_an_error(tmp_path, space, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"mine": 1}')
    (tmp_path / "metrics.csv").write_text("my,numbers\n1,2\n")
    refused(capsys, train_args(space, ""), tmp_path, "--out must name a directory")
    refused(capsys, train_args(space, "  "), tmp_path, "--out must name a directory")


def test_out_in_a_toml_file_is_checked_too(tmp_path, space, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"mine": 1}')
    (tmp_path / "c.toml").write_text('[train]\nout = ""\n')
    refused(capsys, ["train", str(tmp_path / "c.toml"), "--data", str(space / "train.txt")],
            tmp_path, "train.out", "must not be empty")
    (tmp_path / "c.toml").write_text('[train]\nout = "."\n')
    refused(capsys, ["train", str(tmp_path / "c.toml"), "--data", str(space / "train.txt")],
            tmp_path, "--out '.'", "not an rnnkit run")


def test_out_that_is_a_file_or_below_a_file(tmp_path, space, capsys):
    (tmp_path / "f.txt").write_text("keep me")
    refused(capsys, train_args(space, tmp_path / "f.txt"), tmp_path,
            str(tmp_path / "f.txt"), "is an existing file")
    refused(capsys, train_args(space, tmp_path / "f.txt" / "run"), tmp_path,
            str(tmp_path / "f.txt"), "not a directory")


def test_out_that_is_not_writable(tmp_path, space, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anyway: pretend the permission holds
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k:
                            False if str(p).startswith(str(folder)) else real(p, mode, **k))
    try:
        refused(capsys, train_args(space, folder / "run"), tmp_path, "--out",
                str(folder / "run"), "is not writable")
        refused(capsys, train_args(space, folder), tmp_path, "--out", "is not writable")
    finally:
        folder.chmod(0o755)


def test_an_empty_folder_is_adopted_and_marked(tmp_path, space, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(train_args(space, folder)) == 0
    assert json.loads((folder / MARKER).read_text()) == {"format": "rnnkit-run/1",
                                                         "task": "lm"}


def test_resume_of_a_finished_run_says_so_and_changes_nothing(space, capsys):
    run = space / "run"
    before = snapshot(run)
    capsys.readouterr()
    assert main(train_args(space, run, "--resume")) == 0
    err = capsys.readouterr().err
    assert "is finished (1 epoch" in err and "nothing to do" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_resume_with_other_data_is_refused(space, capsys):
    run = space / "run"
    argv = train_args(space, run, "--resume")
    argv[2] = str(space / "other.txt")
    refused(capsys, argv, run, "--resume", "data.train", "other.txt", "train.txt")


@pytest.mark.parametrize("setting,key", [
    ("--hidden_size=32", "model.hidden_size"),
    ("--model.cell=gru", "model.cell"),
    ("--model.options.layer_norm=true", "model.options.layer_norm"),
    ("--batch_size=8", "train.batch_size"),
])
def test_resume_with_another_model_names_the_setting(space, capsys, setting, key):
    run = space / "run"
    refused(capsys, train_args(space, run, "--resume", setting), run, "--resume", key,
            "in the run in")


def test_resume_of_a_run_of_another_task_is_refused(tmp_path, space, capsys):
    run = space / "run"
    tsv = tmp_path / "cls.tsv"
    tsv.write_text("a\tx y\nb\ty z\n" * 20)
    refused(capsys, ["train", "--task", "classify", "--data", str(tsv), "--out", str(run),
                     "--resume", *SMALL], run, str(run), "holds a 'lm' run",
            "trains 'classify'")


def test_a_run_of_an_earlier_version_without_marker_still_resumes(tmp_path, space, capsys):
    run = tmp_path / "old"
    shutil.copytree(space / "run", run, symlinks=True)
    (run / MARKER).unlink()
    before = snapshot(run)
    capsys.readouterr()
    assert main(train_args(space, run, "--resume")) == 0  # recognised: finished
    assert "is finished" in capsys.readouterr().err
    assert snapshot(run) == before
    assert main(train_args(space, run, "--resume", "--epochs", "2")) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["completed"] and results["epochs_done"] == 2
    assert (run / MARKER).is_file()


def test_a_folder_with_only_a_config_json_of_rnnkit_shape_is_not_a_run(tmp_path, space,
                                                                         capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(space / "run" / "config.json", folder / "config.json")
    refused(capsys, train_args(space, folder), tmp_path, "not an rnnkit run")


def test_resume_where_there_is_nothing_says_it_starts_a_new_run(tmp_path, space, capsys):
    out = tmp_path / "fresh"
    assert main(train_args(space, out, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"--resume: no checkpoint in {str(out)!r}, starting a new run" in err
    assert (out / "results.json").is_file()
