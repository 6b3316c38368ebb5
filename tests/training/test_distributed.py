import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from rnnkit.training.checkpoint import CheckpointManager, load_checkpoint

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
PYTHON = Path(sys.executable)


def run(args, tmp_path):
    # the Python BPTT kernel: no C++ build inside the subprocesses' time budget
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               RNNKIT_KERNEL="bptt")
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_gradients_equal_one_process_on_the_same_global_batch(tmp_path):
    run([str(PYTHON), str(WORKER), str(tmp_path), "one"], tmp_path)
    torchrun = PYTHON.parent / "torchrun"
    run([str(torchrun), "--standalone", "--nproc_per_node=2", str(WORKER), str(tmp_path),
         "two"], tmp_path)
    one = load_file(str(tmp_path / "grads-one.safetensors"))
    two = load_file(str(tmp_path / "grads-two.safetensors"))
    assert one["__columns__"].item() == 4 and two["__columns__"].item() == 2  # shards
    assert abs(one["__loss__"].item() - two["__loss__"].item()) < 1e-6
    names = [k for k in one if not k.startswith("__")]
    assert len(names) == 11  # embedding, 2 layers x 4, decoder x 2
    for name in names:
        assert one[name].abs().max() > 0
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=1e-5)

    # only rank 0 wrote: one metrics file without duplicated rows, and the checkpoint
    # holds every rank's RNG and recurrent state so that a resume is exact per rank
    with open(tmp_path / "run-two" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["split"] == "train"]
    assert steps == sorted(set(steps)) and len(steps) > 4
    tensors, meta = load_checkpoint(CheckpointManager(tmp_path / "run-two" /
                                                      "checkpoints").latest())
    assert meta["world_size"] == 2
    assert {"rng.torch.r0", "rng.torch.r1"} <= set(tensors)
    assert not any(p.name.startswith(".") for p in (tmp_path / "run-two" /
                                                    "checkpoints").iterdir()
                   if p.name not in (".",))


def test_task_model_two_process_gradients_equal_one_process(tmp_path):
    worker = Path(__file__).resolve().parent / "ddp_task_worker.py"
    run([str(PYTHON), str(worker), str(tmp_path), "one"], tmp_path)
    run([str(PYTHON.parent / "torchrun"), "--standalone", "--nproc_per_node=2", str(worker),
         str(tmp_path), "two"], tmp_path)
    one = load_file(str(tmp_path / "grads-one.safetensors"))
    two = load_file(str(tmp_path / "grads-two.safetensors"))
    assert one["__count__"].item() == 8 and two["__count__"].item() == 4  # rank 0's half
    assert abs(one["__loss__"].item() - two["__loss__"].item()) < 1e-6
    names = [k for k in one if not k.startswith("__")]
    for name in names:
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=1e-5)
    assert one["encoder.embedding.weight"].abs().max() > 0
    results = (tmp_path / "run-two" / "results.json").read_text()
    assert '"accuracy"' in results  # rank 0 evaluated and wrote the summary


def test_caption_two_process_gradients_equal_one_process(tmp_path):
    """Two ranks each train on half of a batch of images; the loss and the gradients
    DDP averages equal the mean of the two halves' computed in one process."""
    worker = Path(__file__).resolve().parent / "ddp_image_worker.py"
    run([str(PYTHON), str(worker), str(tmp_path), "one"], tmp_path)
    run([str(PYTHON.parent / "torchrun"), "--standalone", "--nproc_per_node=2", str(worker),
         str(tmp_path), "two"], tmp_path)
    one = load_file(str(tmp_path / "grads-one.safetensors"))
    two = load_file(str(tmp_path / "grads-two.safetensors"))
    assert one["__count__"].item() == 4 and two["__count__"].item() == 4  # rank 0's half
    assert abs(one["__loss__"].item() - two["__loss__"].item()) < 1e-6
    names = [k for k in one if not k.startswith("__")]
    for name in names:
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=1e-5)
    assert one["attention.W_q.weight"].abs().max() > 0
    results = (tmp_path / "run-two" / "results.json").read_text()
    assert '"exact_match"' in results  # rank 0 evaluated and wrote the summary
