"""Issue 22: the CLI never overwrites a user's files, and every bad input ends in one
line on stderr naming the argument or file, exit status 2, no traceback, and every file
around it unchanged (SHA-256 of each file before and after)."""
import hashlib
import json
import os
import shutil
import stat

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
    """relative path -> SHA-256 of every file below ``folder`` (symlinks by target,
    special files and files over 10 MB by type and size: reading them would block or
    take long)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[key] = "-> " + os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                found[key] = "dir"
            elif not stat.S_ISREG(info.st_mode) or info.st_size > 10 << 20:
                found[key] = (stat.S_IFMT(info.st_mode), info.st_size)
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


# ----------------------------------------------------------------- unbounded reads
def test_special_and_oversized_data_files_are_refused_before_reading(tmp_path, space,
                                                                     capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate((512 << 20) + 1)  # sparse: nothing is written to disk
    cases = [("/dev/zero", "is not a regular file"), (str(fifo), "is not a regular file"),
             (str(tmp_path), "is a directory"), (str(big), "larger than 512 MiB")]
    for path, why in cases:
        for flag in ("--data", "--valid"):
            argv = train_args(space, tmp_path / "out")
            if flag == "--valid":
                argv += ["--valid", path, "--test", str(space / "train.txt")]
            else:
                argv[2] = path
            refused(capsys, argv, tmp_path, f"data file {path!r}", why)
    refused(capsys, ["eval", str(space / "run"), "--data", "/dev/zero"], space,
            "data file '/dev/zero' is not a regular file")


# ----------------------------------------------------------------- config files and values
@pytest.mark.parametrize("content,why", [
    (None, "is a directory"),
    (b"\xff\xfe[model]\n", "is not UTF-8 text"),
    (bytes(range(256)) * 8, "is not UTF-8 text"),
    (b"[model]\nhidden_size = 8\n" + b"# padding\n" * 120_000, "larger than 1 MiB"),
    (b"[model\n", "is not valid TOML"),
])
def test_bad_config_files_are_named(tmp_path, space, capsys, content, why):
    path = tmp_path / "c.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    refused(capsys, ["train", str(path), "--data", str(space / "train.txt"), "--out",
                     str(tmp_path / "out")], tmp_path, f"config file {str(path)!r}", why)
    refused(capsys, ["train", "/dev/zero", "--out", str(tmp_path / "out")], tmp_path,
            "config file '/dev/zero' is not a regular file")


# one per class of value: NaN / infinity, negative where >= 0, outside [0, 1), outside
# [0, 1], zero where > 0, layer options (unknown, out of range, wrong family, wrong type)
@pytest.mark.parametrize("setting,message", [
    ("--lr=nan", "optim.lr: must be > 0 and finite, got nan"),
    ("--lr=inf", "optim.lr: must be > 0 and finite, got inf"),
    ("--lr=0", "optim.lr: must be > 0 and finite, got 0.0"),
    ("--momentum=-1", "optim.momentum: must be in [0, 1), got -1.0"),
    ("--beta1=1.5", "optim.beta1: must be in [0, 1), got 1.5"),
    ("--beta2=nan", "optim.beta2: must be in [0, 1), got nan"),
    ("--weight_decay=-1", "optim.weight_decay: must be >= 0 and finite, got -1.0"),
    ("--clip=-1", "optim.clip: must be >= 0 and finite, got -1.0"),
    ("--decay=0", "optim.decay: must be in (0, 1], got 0.0"),
    ("--warmup_steps=-5", "optim.warmup_steps: must be >= 0, got -5"),
    ("--min_lr_ratio=-0.5", "optim.min_lr_ratio: must be in [0, 1], got -0.5"),
    ("--dropout=nan", "model.dropout: must be in [0, 1), got nan"),
    ("--init_range=-1", "model.init_range: must be >= 0 and finite, got -1.0"),
    ("--max-minutes=-1", "train.max_minutes: must be >= 0 and finite, got -1.0"),
    ("--max-minutes=nan", "train.max_minutes: must be >= 0 and finite, got nan"),
    ("--keep_checkpoints=-2", "train.keep_checkpoints: must be >= 0, got -2"),
    ("--threads=-1", "train.threads: must be >= 0, got -1"),
    ("--checkpoint_every=-1", "train.checkpoint_every: must be >= 0, got -1"),
    ("--sample_length=-5", "train.sample_length: must be >= 0, got -5"),
    ("--teacher_forcing=1.5", "task.teacher_forcing: must be in [0, 1], got 1.5"),
    ("--teacher_forcing_final=nan", "task.teacher_forcing_final: must be in [-inf, 1]"),
    ("--model.options.zoneout=2", "model.options.zoneout: LSTM: zoneout must be in [0, 1)"),
    ("--model.options.zonout=0.1", "model.options.zonout: unknown option for cell 'lstm'"),
    ("--model.options.layer_norm=3", "model.options.layer_norm: must be true or false"),
    ("--model.options.proj_size=4", "model.options.proj_size: the rnnkit models"),
])
def test_bad_config_values_fail_before_the_data_is_read(tmp_path, capsys, setting,
                                                        message):
    # the data file does not exist: the config error must come first
    argv = ["train", "--data", str(tmp_path / "missing.txt"), "--out",
            str(tmp_path / "out"), *SMALL, setting]
    refused(capsys, argv, tmp_path, f"config key {message}")


def test_layer_options_of_another_cell_family_are_refused(tmp_path, capsys):
    refused(capsys, ["train", "--data", str(tmp_path / "missing.txt"), "--out",
                     str(tmp_path / "out"), "--cell=gru", "--model.options.peephole=true"],
            tmp_path, "model.options.peephole: GRU: peephole is an LSTM option")


def test_a_toml_value_is_checked_like_a_flag(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nschedule = \"cosine\"\nwarmup_steps = -10\nmin_lr_ratio = -1.0\n")
    refused(capsys, ["train", str(path), "--data", str(tmp_path / "missing.txt"), "--out",
                     str(tmp_path / "out")], tmp_path, "optim.warmup_steps: must be >= 0")


def test_resume_with_a_toml_that_changes_the_model_is_refused(tmp_path, space, capsys):
    run = space / "run"
    path = tmp_path / "c.toml"
    path.write_text("[model]\nhidden_size = 64\n")
    refused(capsys, ["train", str(path), "--data", str(space / "train.txt"), "--out",
                     str(run), "--resume", *SMALL[:1], *SMALL[2:]], run,
            "model.hidden_size is 64 on this command line but 16 in the run")


# ----------------------------------------------------------------- task data and labels
@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    rows = [("pos", "good film"), ("neg", "bad plot"), ("pos", "good plot"),
            ("neg", "bad film")] * 6
    (root / "train.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows))
    (root / "odd.tsv").write_text("pos\tgood film\nmeh\tso so film\n")
    os.environ["RNNKIT_KERNEL"] = "bptt"
    try:
        rc = main(["train", "--task", "classify", "--data", str(root / "train.tsv"),
                   "--out", str(root / "run"), "--epochs", "1", "--batch_size=8",
                   *SMALL[:3], *SMALL[5:10]])
    finally:
        del os.environ["RNNKIT_KERNEL"]
    assert rc == 0
    return root


def test_a_label_not_in_training_is_named_with_file_and_line(tmp_path, classify_run,
                                                             capsys):
    odd = classify_run / "odd.tsv"
    refused(capsys, ["train", "--task", "classify", "--data",
                     str(classify_run / "train.tsv"), "--valid", str(odd), "--test",
                     str(odd), "--out", str(tmp_path / "out"), *SMALL], tmp_path,
            f"{odd}: line 2: label 'meh' is not among the training labels (neg, pos)")
    refused(capsys, ["eval", str(classify_run / "run"), "--data", str(odd)], classify_run,
            f"{odd}: line 2: label 'meh' is not among the training labels")


# ----------------------------------------------------------------- sample, eval, predict
@pytest.mark.parametrize("command,flags,message", [
    ("sample", ["--length", "-5"], "--length must be >= 1, got -5"),
    ("sample", ["--top-k", "-5"], "--top-k must be >= 0 (0 = no top-k cut), got -5"),
    ("sample", ["--temperature", "nan"], "--temperature must be > 0 and finite, got nan"),
    ("sample", ["--top-p", "nan"], "--top-p must be in (0, 1], got nan"),
    ("eval", ["--data", "x", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("eval", ["--data", "x", "--bptt", "-1"], "--bptt must be >= 0"),
])
def test_bad_sample_and_eval_options(space, capsys, command, flags, message):
    refused(capsys, [command, str(space / "run"), *flags], space, message)


def test_bad_predict_options(tmp_path, classify_run, capsys):
    run = str(classify_run / "run")
    refused(capsys, ["predict", run, "good", "--beam", "-3"], classify_run,
            "--beam must be >= 0 (0 = the run's own), got -3")
    refused(capsys, ["predict", run, "good", "--attention-png",
                     str(tmp_path / "no" / "a.png")], tmp_path,
            f"--attention-png {str(tmp_path / 'no' / 'a.png')!r}", "does not exist")


# ----------------------------------------------------------------- bench outputs first
@pytest.mark.parametrize("flags,message", [
    (["--json", "{tmp}/no/such/folder/r.json"], "--json '{tmp}/no/such/folder/r.json'"),
    (["--json", "{tmp}"], "--json '{tmp}' is a directory"),
    (["--threads", "-1"], "--threads must be >= 0, got -1"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
])
def test_bench_checks_its_arguments_before_the_work(tmp_path, capsys, flags, message):
    flags = [f.format(tmp=tmp_path) for f in flags]
    before = snapshot(tmp_path)
    assert main(["bench", "--quick", "--no-memory", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table: nothing was timed
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit bench: error: ")
    assert message.format(tmp=tmp_path) in lines[0]
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------- the safety net
def test_any_error_a_user_can_cause_is_one_line_and_debug_shows_it(tmp_path, space,
                                                                   capsys, monkeypatch):
    import rnnkit.data.datasets as datasets

    def broken(*args, **kwargs):
        raise RuntimeError("size mismatch for x\n  27 more lines")

    monkeypatch.setattr(datasets, "load_corpus", broken)
    argv = train_args(space, tmp_path / "out")
    refused(capsys, argv, tmp_path, "RuntimeError: size mismatch for x",
            "rerun with --debug")
    with pytest.raises(RuntimeError, match="size mismatch"):
        main([*argv, "--debug"])
    monkeypatch.setenv("RNNKIT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="size mismatch"):
        main(argv)


def test_an_os_error_names_the_file(tmp_path, space, capsys, monkeypatch):
    import rnnkit.data.datasets as datasets

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(datasets, "load_corpus", denied)
    refused(capsys, train_args(space, tmp_path / "out"), tmp_path,
            "PermissionError: Permission denied: '/some/file'")


def test_the_process_exits_2_with_one_line(tmp_path):
    """At process level too (the console script's exit status), for /dev/zero as data."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", "--data",
                           "/dev/zero", "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("rnnkit train: error: data file '/dev/zero' is not a "
                                   "regular file (a FIFO, device or socket), expected a "
                                   "text file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "abc"], "rnnkit train: error: argument --epochs: invalid int"),
    (["trian"], "rnnkit: error: argument COMMAND: invalid choice: 'trian'"),
    (["sample", "--length", "1"], "rnnkit sample: error: the following arguments are "
                                  "required: checkpoint"),
])
def test_argparse_errors_are_one_line_too(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message) and "usage:" not in err
    assert os.listdir(tmp_path) == []
