"""``rnnkit train --task caption|vqa``, ``eval`` and ``predict`` on a folder of images,
bad input as one line, exit 2, and kill -9 then ``--resume`` of a caption run."""
import json
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image

from rnnkit.cli import main
from rnnkit.training.checkpoint import CheckpointManager, load_checkpoint
from tests.test_cli_safety import one_line_error, snapshot

TINY = ["--embed_size=8", "--hidden_size=16", "--cnn_width=4", "--image_size=16",
        "--batch_size=8", "--eval_batch_size=16", "--progress=off", "--tensorboard=false",
        "--threads=1", "--epochs=1"]


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    assert main(["data", "scenes", str(folder), "--seed", "2", "--size", "24"]) == 0
    assert len((folder / "test.tsv").read_text().splitlines()) >= 2  # 2 scenes, 1-2 captions
    return folder


def test_data_scenes_refuses_a_folder_in_use(tmp_path, scenes, capsys):
    assert main(["data", "scenes", str(scenes)]) == 2
    one_line_error(capsys, "data", "is not an empty folder")


def test_caption_train_eval_predict(tmp_path, scenes, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "caption", "--data", str(scenes), "--out", str(out),
                 *TINY]) == 0
    assert (out / "attention.png").exists()
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(scenes)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bleu1", "bleu2", "bleu3", "bleu4", "exact_match", "n"} <= set(result)
    assert result["n"] == 2 and 0 <= result["bleu4"] <= 1
    assert main(["eval", str(out), "--data", str(scenes), "--beam", "3"]) == 0
    png = tmp_path / "att.png"
    image = scenes / "images" / "test-00000.png"
    assert main(["predict", str(out), str(image), "--attention-png", str(png)]) == 0
    caption = capsys.readouterr().out.strip()
    assert png.stat().st_size > 0 and all(w in caption.split() or not caption
                                          for w in caption.split())
    assert main(["predict", str(out), str(image), "--beam", "3"]) == 0
    assert main(["predict", str(out), str(image), "--question", "why ?"]) == 2
    one_line_error(capsys, "predict", "--question is for vqa")


def test_vqa_train_eval_predict(tmp_path, scenes, capsys):
    out = tmp_path / "vqa"
    assert main(["train", "--task", "vqa", "--data", str(scenes / "vqa"), "--out", str(out),
                 *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(scenes / "vqa")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"accuracy", "n"} and result["n"] > 0
    image = scenes / "images" / "test-00000.png"
    png = tmp_path / "hops.png"
    assert main(["predict", str(out), str(image), "--question", "how many shapes are there ?",
                 "--attention-png", str(png)]) == 0
    answer = capsys.readouterr().out.strip()
    assert answer in {"zero", "one", "two", "three", "yes", "no", "red", "green", "blue",
                      "yellow", "white", "circle", "square", "triangle"} and png.exists()
    assert main(["predict", str(out), str(image)]) == 2
    one_line_error(capsys, "predict", "needs --question")


def test_no_attention_run_and_its_figure(tmp_path, scenes, capsys):
    out = tmp_path / "plain"
    assert main(["train", "--task", "caption", "--data", str(scenes), "--out", str(out),
                 "--attention", "none", *TINY]) == 0
    capsys.readouterr()
    image = scenes / "images" / "test-00000.png"
    assert main(["predict", str(out), str(image), "--attention-png",
                 str(tmp_path / "a.png")]) == 2
    one_line_error(capsys, "predict", "needs a model with attention")


@pytest.mark.parametrize("problem,fragments", [
    ("tab", ["train.tsv", "line 2", "image_path<TAB>caption"]),
    ("empty", ["train.tsv", "line 1", "empty caption"]),
    ("missing", ["train.tsv", "line 2", "gone.png", "does not exist"]),
    ("unreadable", ["train.tsv", "line 1", "cannot read image", "broken.png"]),
    ("nofolder", ["expected a folder with train.tsv"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, problem, fragments):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(data / "ok.png")
    (data / "broken.png").write_text("not a png")
    lines = {"tab": "ok.png\ta caption\nok.png no tab here\n",
             "empty": "ok.png\t  \n",
             "missing": "ok.png\ta caption\ngone.png\tanother\n",
             "unreadable": "broken.png\ta caption\n",
             "nofolder": ""}[problem]
    for split in ("train", "valid", "test"):
        (data / f"{split}.tsv").write_text(lines or "ok.png\ta caption\n")
    where = data if problem != "nofolder" else data / "train.tsv"
    before = snapshot(tmp_path)
    assert main(["train", "--task", "caption", "--data", str(where), "--out",
                 str(tmp_path / "out"), *TINY]) == 2
    one_line_error(capsys, "train", *fragments)
    assert snapshot(tmp_path) == before


# A caption run in a child process that kills itself (SIGKILL) right after training step
# `at_step`: no clean-up of any kind runs, as with kill -9 from outside.
KILL_AT_STEP = """
import os, signal, sys
from rnnkit.cli import main
from rnnkit.training.checkpoint import CheckpointManager, load_checkpoint
from rnnkit.training.task_trainer import TaskTrainer

at_step = int(sys.argv[1])
step = TaskTrainer.step


def step_then_kill(self, *batch):
    loss = step(self, *batch)
    if self.step_count + 1 == at_step:  # step_count counts the steps before this one
        os.kill(os.getpid(), signal.SIGKILL)
    return loss


TaskTrainer.step = step_then_kill
sys.exit(main(sys.argv[2:]))
"""


def test_caption_kill_9_then_resume_gives_the_uninterrupted_run(tmp_path, scenes):
    """Hard attention samples its locations from the global RNG, so the resumed run
    matches only if the RNG, the REINFORCE baseline, the optimizer and the data position
    all come back from the checkpoint."""
    args = ["train", "--task", "caption", "--data", str(scenes), "--attention", "hard",
            *TINY[:-1], "--epochs=3", "--log_every=1", "--checkpoint_every=2"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0  # 3 steps per epoch
    out = tmp_path / "killed"
    command = [sys.executable, "-c", KILL_AT_STEP, "6", *args, "--out", str(out)]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert CheckpointManager(out / "checkpoints").steps() == [2, 3, 4]  # epoch ends too
    resumed = subprocess.run([sys.executable, "-m", "rnnkit.cli", *args, "--out", str(out),
                              "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from step-00000004" in resumed.stderr

    def rows(run):  # every training and validation figure, to the last digit
        return [line for line in (run / "metrics.csv").read_text().splitlines()
                if ",train," in line or ",valid," in line or ",test," in line]

    def strip_times(lines):  # elapsed_s and tokens_per_s are wall-clock
        header = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()[0].split(",")
        drop = {header.index("elapsed_s"), header.index("tokens_per_s")}
        return [[v for i, v in enumerate(line.split(",")) if i not in drop] for line in lines]

    assert strip_times(rows(out)) == strip_times(rows(tmp_path / "ref"))
    assert len([r for r in rows(out) if ",train," in r]) == 9
    final = {run: load_checkpoint(CheckpointManager(run / "checkpoints").latest())[0]
             for run in (out, tmp_path / "ref")}
    for name, tensor in final[out].items():
        if name.startswith("model."):
            assert torch.equal(tensor, final[tmp_path / "ref"][name]), name


def test_the_regulariser_has_its_own_column(tmp_path, scenes):
    import csv

    out = tmp_path / "reg"
    assert main(["train", "--task", "caption", "--data", str(scenes), "--out", str(out),
                 "--attention_reg=0.5", *TINY]) == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scored = [r for r in rows if r["split"] in ("valid", "test")]
    assert scored and all(float(r["attention_reg"]) > 0 for r in scored)
    assert all(r["attention_reg"] == "" for r in rows if r["split"] == "train")
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["attention_reg"] > 0 and results["test"]["loss"] > 0
