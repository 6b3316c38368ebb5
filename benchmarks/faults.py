"""Fault injection: randomised, repeatable trials of rnnkit's checkpoints (issue 21).

    python -m benchmarks.faults kill    [--trials 50] [--seed 0]   # kill -9, then --resume
    python -m benchmarks.faults disk    [--trials 20] [--seed 0]   # full disk in a write
    python -m benchmarks.faults corrupt [--trials 100] [--seed 0]  # damaged checkpoints
    python -m benchmarks.faults all

Each prints one line per failed trial and ends with ``N trials, N survived``. Every run
of ``rnnkit train`` / ``sample`` / ``eval`` is a forked child process calling
``rnnkit.cli.main`` (the parent has imported torch once, so a trial costs no start-up),
with one intra-op thread. Trials are drawn from ``--seed``: the same seed gives the same
kill points, file-size limits and damaged bytes (the kill *times* of ``kill`` are wall
clock delays, up to the time the reference run took to its last checkpoint, so where
they land varies a little with the machine's load).

kill
    A small character model trains for two epochs (checkpoint every 7 steps; half the
    trials also every 0.1 s by ``train.checkpoint_minutes``). Each trial kills it with
    SIGKILL, either from outside after a random delay or from inside at a random
    file-system operation of the checkpoint code (half-way through writing a file, before
    or after a rename, a symlink swap, the deletion of a pruned checkpoint), then runs
    the same command with ``--resume``. Survived: the resume exits 0, it restarted from
    a checkpoint at most 7 steps before the last step the killed run logged, and the
    metrics.csv rows (step, epoch, split, loss, lr) and sample.txt equal an
    uninterrupted run's.
disk
    The run is stopped (SIGKILL) right after its 1st-3rd checkpoint, then resumed with
    RLIMIT_FSIZE set below the size of a checkpoint's tensors file (a random size), so a
    checkpoint write runs out of room part-way. Survived: exit code 2 with one line
    ``rnnkit train: error: could not write checkpoint ...``, every file under
    checkpoints/ byte-identical to before (no leftovers), and a later ``--resume``
    without the limit finishing with the uninterrupted run's metrics.
corrupt
    Variants of a finished run's checkpoint: truncated at a random length or one random
    bit flipped (tensors file or meta.json), and wrong-model cases (a tensors file from
    another run with or without its hash fixed in meta.json, an adding-task checkpoint,
    a trainer of another size, cell, depth, vocabulary or kind resuming it), loaded by
    ``rnnkit sample``, ``rnnkit eval``,
    ``rnnkit train --resume`` or ``Trainer.resume``. Survived: a CheckpointError (a
    variant whose bytes still mean the same content, e.g. ``1e-08`` -> ``1E-08``, may
    load, and is counted apart); anything else -- another exception, a crash of the
    process, a silent load of different content -- fails.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

CHECKPOINT_EVERY = 7
TEXT = ("It is a truth universally acknowledged, that a single man in possession of a "
        "good fortune, must be in want of a wife. However little known the feelings or "
        "views of such a man may be on his first entering a neighbourhood, this truth is "
        "so well fixed in the minds of the surrounding families.\n")
SMALL = ["--epochs", "2", "--embed_size=8", "--hidden_size=24", "--num_layers=2",
         "--batch_size=4", "--bptt=10", "--eval_batch_size=2", "--log_every=1",
         f"--checkpoint_every={CHECKPOINT_EVERY}", "--keep_checkpoints=2",
         "--progress=off", "--tensorboard=false", "--sample_length=30", "--threads=1",
         "--lr=0.01", "--dropout=0.1"]
COMPARED = ("step", "epoch", "split", "loss", "lr")

__all__ = ["Workspace", "kill_trial", "disk_trial", "corrupt_trial", "run_trials", "main"]


# ----------------------------------------------------------------------- children
def _child(argv, log, hook=None, fsize=None, debug=False):
    """In a forked child: optional RLIMIT_FSIZE and hook, then ``rnnkit.cli.main``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # the streams too (under pytest they are not the file descriptors 1 and 2)
    sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)
    code = 1
    try:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))
        if hook is not None:
            hook()
        if callable(argv):
            code = argv()
        else:
            from rnnkit.cli import main
            code = main([*argv, "--debug"] if debug else argv)
    except BaseException as e:  # classified by the parent from the exit code
        from rnnkit.training.checkpoint import CheckpointError
        traceback.print_exc()
        code = 3 if isinstance(e, CheckpointError) else 4
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def spawn(argv, log, **kwargs):
    """Fork a child running ``_child``; returns its pid."""
    pid = os.fork()
    if pid == 0:
        _child(argv, log, **kwargs)
    return pid


def wait(pid):
    """Exit code of a child: its code, or -signal when a signal ended it."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run(argv, log, **kwargs):
    return wait(spawn(argv, log, **kwargs))


def die():
    """What kill -9 does: the process ends at once, no handler, no cleanup."""
    os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------- in-write kills
def kill_at_operation(index, fraction):
    """Hook: SIGKILL this process at the ``index``-th file-system operation of the
    checkpoint code (1-based); a file write dies after ``fraction`` of its bytes."""
    import rnnkit.training.checkpoint as ck
    count = [0]

    def counted(name, real):
        def wrapper(*args, **kwargs):
            count[0] += 1
            if count[0] == index:
                if name == "_write_file":
                    path, data = args
                    with open(path, "wb") as f:
                        f.write(data[:int(len(data) * fraction)])
                        f.flush()
                elif name == "_remove" and Path(args[0]).is_dir():
                    files = sorted(p for p in Path(args[0]).rglob("*") if p.is_file())
                    for p in files[:int(len(files) * fraction)]:
                        p.unlink()
                die()
            return real(*args, **kwargs)
        return wrapper

    for name in ("_write_file", "_fsync_dir", "_remove"):
        if hasattr(ck, name):  # (rnnkit before issue 21 had no _remove)
            setattr(ck, name, counted(name, getattr(ck, name)))
    proxy = type("os", (), {})()
    for name in dir(os):
        if not name.startswith("__"):
            setattr(proxy, name, getattr(os, name))
    for name in ("rename", "replace", "symlink"):
        setattr(proxy, name, counted(name, getattr(os, name)))
    ck.os = proxy


def count_operations(out_file):
    """Hook: count the checkpoint code's file-system operations of a run into a file."""
    import rnnkit.training.checkpoint as ck
    count = [0]

    def counted(real):  # written at each call: the child ends with os._exit
        def wrapper(*args, **kwargs):
            count[0] += 1
            with open(out_file, "a") as f:
                f.write(f"{count[0]} {time.time()}\n")
            return real(*args, **kwargs)
        return wrapper

    for name in ("_write_file", "_fsync_dir", "_remove"):
        if hasattr(ck, name):
            setattr(ck, name, counted(getattr(ck, name)))
    proxy = type("os", (), {})()
    for name in dir(os):
        if not name.startswith("__"):
            setattr(proxy, name, getattr(os, name))
    for name in ("rename", "replace", "symlink"):
        setattr(proxy, name, counted(getattr(os, name)))
    ck.os = proxy


def kill_after_saves(saves):
    """Hook: SIGKILL this process right after its ``saves``-th checkpoint is complete."""
    from rnnkit.training.checkpoint import CheckpointManager
    real, count = CheckpointManager.save, [0]

    def save(self, *args, **kwargs):
        target = real(self, *args, **kwargs)
        count[0] += 1
        if count[0] == saves:
            die()
        return target

    CheckpointManager.save = save


# ----------------------------------------------------------------------- the workspace
def metrics_rows(run_dir):
    """The compared columns of metrics.csv, complete lines only."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    return [tuple(r[k] for k in COMPARED) for r in csv.DictReader(lines)
            if None not in r.values()]


def last_train_step(run_dir):
    steps = [int(r[0]) for r in metrics_rows(run_dir) if r[2] == "train"]
    return max(steps, default=0)


def snapshot(folder):
    """{relative path: sha256 or link target} of everything under ``folder``."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Workspace:
    """A temporary folder with the corpus and the uninterrupted reference run."""

    def __init__(self, root=None):
        self.root = Path(root or tempfile.mkdtemp(prefix="rnnkit-faults-"))
        self.data = self.root / "corpus.txt"
        self.data.write_text(TEXT * 12)
        _warm_up()
        self.reference = self.root / "reference"
        start = time.monotonic()
        code = run(self.train_args(self.reference), self.root / "reference.log")
        self.seconds = time.monotonic() - start
        if code != 0:
            raise RuntimeError(f"the reference run failed ({code}): "
                               + (self.root / "reference.log").read_text()[-2000:])
        self.rows = metrics_rows(self.reference)
        self.sample = (self.reference / "sample.txt").read_text()
        counter = self.root / "operations.txt"
        start = time.time()
        run(self.train_args(self.root / "counted"), self.root / "counted.log",
            hook=lambda: count_operations(counter))
        times = [float(line.split()[1]) - start for line in counter.read_text().splitlines()]
        self.operations = len(times)
        # the training part of a run: up to its last checkpoint operation
        self.training_seconds = times[-1]
        self.first_checkpoint_seconds = times[0]
        self._other = None

    def train_args(self, out, *extra):
        return ["train", "--data", str(self.data), "--out", str(out), *SMALL, *extra]

    def matches_reference(self, out, sample=True):
        """'' when metrics.csv and sample.txt equal the reference run's, else why not."""
        rows = metrics_rows(out)
        if rows != self.rows:
            diff = next((i for i, (a, b) in enumerate(zip(rows, self.rows)) if a != b),
                        min(len(rows), len(self.rows)))
            return (f"metrics differ from row {diff} ({len(rows)} vs {len(self.rows)} "
                    f"rows): {rows[diff:diff + 1]} vs {self.rows[diff:diff + 1]}")
        path = out / "sample.txt"
        if sample and (not path.exists() or path.read_text() != self.sample):
            return "sample.txt differs"
        return ""

    def other_runs(self):
        """Finished runs of other models: a wider LM and an adding-task model."""
        if self._other is None:
            wide, adding = self.root / "other-wide", self.root / "other-adding"
            run(self.train_args(wide, "--hidden_size=32", "--epochs", "1"),
                self.root / "wide.log")
            run(["train", "--task", "adding", "--length", "8", "--out", str(adding),
                 "--epochs", "1", "--epoch_batches=3", "--hidden_size=8", "--batch_size=4",
                 "--threads=1", "--progress=off", "--tensorboard=false"],
                self.root / "adding.log")
            self._other = {"wide": wide, "adding": adding}
        return self._other

    def fresh(self, name):
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def _warm_up():
    """Import (and build) everything once in the parent, so children start warm."""
    import torch

    import rnnkit.cli  # noqa: F401
    import rnnkit.cli_memory  # noqa: F401
    import rnnkit.viz.curves  # noqa: F401
    from rnnkit.layers import make_layer

    torch.set_num_threads(1)
    make_layer("lstm", 2, 2)(torch.zeros(2, 1, 2))


# ----------------------------------------------------------------------- kill -9
def kill_trial(ws, rng, index):
    """One kill -9 trial; returns '' when it survived, else what went wrong."""
    out = ws.fresh(f"kill-{index}")
    extra = ["--checkpoint-minutes", "0.0017" if index % 2 else "0"]
    args = ws.train_args(out, *extra)
    if rng.random() < 0.5:
        operation, fraction = rng.randint(1, ws.operations), rng.random()
        how = f"inside checkpoint code, operation {operation}/{ws.operations}"
        code = run(args, ws.root / "killed.log",
                   hook=lambda: kill_at_operation(operation, fraction))
    else:
        # from half-way to the first checkpoint to the last one; a run that finished
        # before its kill is tried again with a shorter delay (a slow moment of the
        # machine), so that every trial is a kill
        delay = rng.uniform(0.5 * ws.first_checkpoint_seconds, ws.training_seconds)
        for _ in range(5):
            how = f"after {delay:.3f} s (training ends at {ws.training_seconds:.3f} s)"
            pid = spawn(args, ws.root / "killed.log")
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            code = wait(pid)
            if code == -signal.SIGKILL:
                break
            shutil.rmtree(out, ignore_errors=True)
            delay *= rng.uniform(0.3, 0.9)
    if code != -signal.SIGKILL:  # it finished first: not a trial of a resume
        return "ok: not killed" if code == 0 and not ws.matches_reference(out) else (
            f"the run to kill ended with {code} before the kill ({how})")
    killed_at = last_train_step(out)
    log = ws.root / "resumed.log"
    code = run([*args, "--resume"], log)
    text = log.read_text()
    if code != 0:
        return f"resume exited {code} ({how}): {text.strip().splitlines()[-1:]}"
    found = re.search(r"resuming from step-(\d+)", text)
    start = int(found.group(1)) if found else 0
    if "is finished" in text:  # killed after training, while reporting
        start = killed_at
    elif not found and "no checkpoint" not in text:
        return f"resume did not say where it started ({how})"
    if not 0 <= killed_at - start <= CHECKPOINT_EVERY:
        return (f"resumed from step {start} but the killed run had logged step "
                f"{killed_at} ({how})")
    why = ws.matches_reference(out, sample="is finished" not in text)
    if why:
        return f"{why} ({how}, resumed from step {start})"
    where = ("after training" if "is finished" in text else "inside a checkpoint write"
             if "inside" in how else "before the first checkpoint" if not found
             else "during training")
    return f"ok: killed {where}"


# ----------------------------------------------------------------------- full disk
def disk_trial(ws, rng, index):
    """One full-disk trial; returns '' when it survived, else what went wrong."""
    out = ws.fresh(f"disk-{index}")
    args = ws.train_args(out, "--checkpoint-minutes", "0")
    saves = rng.randint(1, 3)
    code = run(args, ws.root / "first.log", hook=lambda: kill_after_saves(saves))
    if code != -signal.SIGKILL:
        return f"the first part ended with {code}, not the planned kill"
    before = snapshot(out / "checkpoints")
    sizes = [p.stat().st_size for p in (out / "checkpoints").rglob("tensors.safetensors")]
    # above every other file the resume writes (metrics.csv grows by a few rows before
    # its first checkpoint), below a checkpoint's tensors file
    floor = max(p.stat().st_size for p in out.iterdir() if p.is_file()) + 8192
    limit = rng.randint(floor, min(sizes) - 1)
    log = ws.root / "full.log"
    code = run([*args, "--resume"], log, fsize=limit)
    text = log.read_text()
    lines = text.strip().splitlines()
    what = f"limit {limit} B, after {saves} checkpoint(s)"
    if code != 2:
        return f"with a full disk the run exited {code} ({what}): {lines[-1:]}"
    errors = [line for line in lines if "error" in line.lower()]
    if "Traceback" in text or len(errors) != 1 or not lines[-1].startswith(
            "rnnkit train: error: could not write checkpoint"):
        return f"unclear error ({what}): {lines[-1:]}"
    after = snapshot(out / "checkpoints")
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        return f"checkpoints changed ({what}): {changed[:3]}"
    code = run([*args, "--resume"], ws.root / "after.log")
    if code != 0:
        return f"the resume after the full disk exited {code} ({what})"
    why = ws.matches_reference(out)
    return f"{why} ({what})" if why else "ok"


# ----------------------------------------------------------------------- corrupted
def _damage(checkpoint, rng, kind):
    """Truncate or flip one bit of a file of ``checkpoint``; returns a description."""
    name = rng.choice(["tensors.safetensors", "meta.json"])
    path = checkpoint / name
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        length = rng.randrange(0, len(data))
        path.write_bytes(bytes(data[:length]))
        return f"{name} truncated to {length}/{len(data)} B"
    position, bit = rng.randrange(len(data)), rng.randrange(8)
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))
    return f"{name} bit {bit} of byte {position}/{len(data)} flipped"


def _loaded_unchanged(checkpoint, original):
    """True when the damaged checkpoint still loads to exactly the original content."""
    import torch

    from rnnkit.training.checkpoint import CheckpointError, load_checkpoint
    try:
        tensors, meta = load_checkpoint(checkpoint)
    except CheckpointError:
        return False
    ref_tensors, ref_meta = load_checkpoint(original)
    return (json.dumps(meta, sort_keys=True) == json.dumps(ref_meta, sort_keys=True)
            and tensors.keys() == ref_tensors.keys()
            and all(torch.equal(tensors[k], ref_tensors[k]) for k in tensors))


WRONG_MODELS = ("splice", "splice_hash", "other_kind", "api_hidden", "api_layers",
                "api_cell", "api_vocab", "api_kind")


def _api_resume(ws, checkpoint, change):
    """Resume ``checkpoint`` into a Trainer whose model differs by ``change``."""
    from rnnkit.data.datasets import load_corpus
    from rnnkit.models import build_language_model
    from rnnkit.training.config import Config, apply_overrides
    from rnnkit.training.trainer import Trainer

    settings = {"model.embed_size": "8", "model.hidden_size": "24", "model.num_layers": "2",
                "train.batch_size": "4", "train.bptt": "10", "train.progress": "off"}
    text = TEXT * 12
    kind = "char_lm"
    if change == "api_hidden":
        settings["model.hidden_size"] = "20"
    elif change == "api_layers":
        settings["model.num_layers"] = "1"
    elif change == "api_cell":
        settings["model.cell"] = "gru"
    elif change == "api_vocab":
        text += "QXZ@#\n"
    else:
        kind = "word_lm"
    data = ws.root / f"{change}.txt"
    data.write_text(text)
    corpus = load_corpus(train=str(data), level="char")
    config = apply_overrides(Config(), settings).validate()
    model = build_language_model(config.model, len(corpus.vocab), "char")
    Trainer(model, corpus, config, None, None, {"kind": kind}).resume(checkpoint)
    return 0


def corrupt_trial(ws, rng, index):
    """One damaged-checkpoint variant; returns '' (or 'unchanged') when it survived."""
    from rnnkit.training.checkpoint import resolve_checkpoint

    run_dir = ws.fresh(f"corrupt-{index}")
    shutil.copytree(ws.reference, run_dir, symlinks=True)
    command = rng.choice(["sample", "eval", "resume"])
    prefer = "latest" if command == "resume" else "best"
    checkpoint = resolve_checkpoint(run_dir, prefer=prefer)
    original = resolve_checkpoint(ws.reference, prefer=prefer)
    variant = ("truncate", "flip", "wrong")[index % 5 // 2] if index % 5 < 4 else "wrong"
    if variant == "wrong":
        change = WRONG_MODELS[index // 5 % len(WRONG_MODELS)]
        what = f"wrong model: {change}"
        other = ws.other_runs()
        if change in ("splice", "splice_hash"):
            source = resolve_checkpoint(other["wide"], prefer="latest")
            blob = (source / "tensors.safetensors").read_bytes()
            (checkpoint / "tensors.safetensors").write_bytes(blob)
            if change == "splice_hash":  # the meta names the new file's hash: looks whole
                meta = json.loads((checkpoint / "meta.json").read_text())
                meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
                (checkpoint / "meta.json").write_text(json.dumps(meta, indent=1))
        elif change == "other_kind":
            # (eval picks its path by the kind it finds, so it is no mix-up for eval)
            command = "sample" if command == "eval" else command
            source = resolve_checkpoint(other["adding"], prefer="best")
            shutil.rmtree(checkpoint)
            shutil.copytree(source, checkpoint)
        else:
            argv = lambda: _api_resume(ws, checkpoint, change)  # noqa: E731
            code = run(argv, ws.root / "corrupt.log")
            return "ok: CheckpointError" if code == 3 else _corrupt_failure(ws, code, what)
    else:
        what = _damage(checkpoint, rng, variant)
    argv = {"sample": ["sample", str(run_dir), "--length", "5"],
            "eval": ["eval", str(run_dir), "--data", str(ws.data)],
            "resume": ws.train_args(run_dir, "--resume")}[command]
    code = run(argv, ws.root / "corrupt.log", debug=True)
    if code == 3:
        return "ok: CheckpointError"
    if code == 0 and variant != "wrong" and _loaded_unchanged(checkpoint, original):
        return "ok: loaded, content unchanged"
    return _corrupt_failure(ws, code, f"{what}, rnnkit {command}")


def _corrupt_failure(ws, code, what):
    kinds = {0: "loaded silently", 4: "another exception"}
    tail = (ws.root / "corrupt.log").read_text().strip().splitlines()[-1:]
    return f"{what}: {kinds.get(code, f'process ended with {code}')} {tail}"


# ----------------------------------------------------------------------- driver
TRIALS = {"kill": (kill_trial, 50), "disk": (disk_trial, 20), "corrupt": (corrupt_trial, 100)}


def run_trials(ws, name, trials, seed=0, say=print):
    """Run ``trials`` trials of ``name``; returns ``(survived, outcomes, failures)``:
    outcomes counts the survivors by what happened (``"killed during training"``)."""
    trial = TRIALS[name][0]
    outcomes, failures = Counter(), []
    for index in range(trials):
        rng = random.Random(f"{name}-{seed}-{index}")
        why = trial(ws, rng, index)
        if why.startswith("ok"):
            outcomes[why[4:] or "survived"] += 1
        else:
            failures.append(why)
            say(f"  trial {index}: {why}")
        shutil.rmtree(ws.root / f"{name}-{index}", ignore_errors=True)
    return sum(outcomes.values()), outcomes, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=(*TRIALS, "all"))
    parser.add_argument("--trials", type=int, default=0, help="default: 50 / 20 / 100")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = list(TRIALS) if args.case == "all" else [args.case]
    ws = Workspace()
    print(f"reference run: {ws.seconds:.2f} s ({ws.training_seconds:.2f} s to its last "
          f"checkpoint), {len(ws.rows)} metrics rows, "
          f"{ws.operations} file-system operations in checkpoint code")
    failed = 0
    try:
        for name in names:
            start = time.monotonic()
            trials = args.trials or TRIALS[name][1]
            survived, outcomes, failures = run_trials(ws, name, trials, args.seed)
            note = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
            print(f"{name}: {trials} trials, {survived} survived ({note}) "
                  f"[{time.monotonic() - start:.0f} s]")
            failed += len(failures)
    finally:
        ws.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
