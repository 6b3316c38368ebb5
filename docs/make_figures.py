"""Regenerate every figure of the tutorial from live runs: ``python docs/make_figures.py``.

``COMMANDS`` is the one list of what the tutorial runs. Each entry is an ``rnnkit``
command line exactly as a page quotes it; it runs from the repository root, training
runs go to ``runs/docs/`` (gitignored, removed first) and figures to ``docs/figures/``.
A figure belongs to the command whose arguments name it. ``tests/test_docs.py`` checks
that every figure a page shows is made here and that every command a page quotes is in
this list and parses with rnnkit's own parser.

Every command runs with ``OMP_NUM_THREADS=1`` (training commands also say
``--threads=1``): small budgets, one core, a few minutes in all. The PNGs are then
rewritten with a 256-colour palette so that the committed copies stay small.

    python docs/make_figures.py            # everything
    python docs/make_figures.py --list     # the commands, one a line
    python docs/make_figures.py adding     # only the commands containing "adding"
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["COMMANDS", "FIGURES_DIR", "RUNS_DIR", "figures_of", "main"]

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = "docs/figures"
RUNS_DIR = "runs/docs"
SHAKESPEARE = "../shared/data/tinyshakespeare/input.txt"
TEMPS = "../shared/data/timeseries/daily-min-temperatures.csv"
CHAR_LM = "--hidden_size=128 --embed_size=32 --num_layers=1 --threads=1 --max-minutes 2"
PARALLEL_CELLS = ("lstm", "indrnn", "sru", "qrnn", "mingru", "minlstm")

COMMANDS = [
    # sequences.md: a character-level language model on text that ships with Python
    f"rnnkit train --cell=lstm {CHAR_LM} --epochs=5 --out runs/docs/charlm",
    'rnnkit sample runs/docs/charlm --prime "The " --length 200 --temperature 0.8 --seed 1',
    "rnnkit plot curves runs/docs/charlm --out docs/figures/charlm-curves.png",
    # weight-sharing.md
    "rnnkit plot gradients --run runs/docs/charlm --out docs/figures/charlm-gradients.png",
    # bptt.md: the same model with 5-step truncation
    f"rnnkit train --cell=lstm {CHAR_LM} --epochs=5 --bptt=5 --batch_size=640 --out runs/docs/charlm-bptt5",
    "rnnkit plot curves runs/docs/charlm runs/docs/charlm-bptt5 "
    "--out docs/figures/bptt-curves.png",
    # gradients.md
    "rnnkit plot gradients --cell rnn,lstm,gru --length 100 --out docs/figures/gradients.png",
    "rnnkit plot gradients --cell rnn --init-scale 5 --out docs/figures/gradients-exploding.png",
    "rnnkit plot clipping --out docs/figures/clipping.png",
    # lstm.md
    "rnnkit plot gradients --cell lstm --forget-bias 0,1,2,3 --out docs/figures/lstm-forget-bias.png",
    "rnnkit train --preset char-shakespeare --cell=lstm --hidden_size=128 --embed_size=32 "
    "--num_layers=1 --epochs=3 --threads=1 --max-minutes 2 --out runs/docs/shakespeare",
    f"rnnkit plot gates runs/docs/shakespeare --text-file {SHAKESPEARE} --max-chars 240 "
    "--units 16 --find line-position --out docs/figures/gates.png",
    f"rnnkit plot gates runs/docs/shakespeare --text-file {SHAKESPEARE} --max-chars 1000 "
    "--find line-position --out docs/figures/gates.html",
    # gru.md: the adding problem, T = 50
    *(f"rnnkit train --task adding --length 50 --cell={cell} --hidden_size=64 "
      f"--num_layers=1 --epochs=30 --threads=1 --max-minutes 1 --out runs/docs/adding-{cell}"
      for cell in ("rnn", "lstm", "gru")),
    "rnnkit eval runs/docs/adding-gru",
    "rnnkit plot curves runs/docs/adding-rnn runs/docs/adding-lstm runs/docs/adding-gru "
    "--out docs/figures/adding-curves.png",
    # architectures.md: many-to-one, one direction against both
    "rnnkit train --preset sst2 --bidirectional=false --embed_size=64 --hidden_size=64 "
    "--epochs=3 --threads=1 --max-minutes 1 --out runs/docs/sst2-uni",
    "rnnkit train --preset sst2 --embed_size=64 --hidden_size=64 "
    "--epochs=3 --threads=1 --max-minutes 1 --out runs/docs/sst2-bi",
    "rnnkit plot curves runs/docs/sst2-uni runs/docs/sst2-bi --out docs/figures/sst2-curves.png",
    'rnnkit predict runs/docs/sst2-bi "a gripping , funny film"',
    # attention.md: date normalisation, encoder-decoder with Luong attention
    "rnnkit train --preset date --hidden_size=64 --epochs=1 --threads=1 --max-minutes 1 "
    "--out runs/docs/date",
    'rnnkit predict runs/docs/date "september 27, 1994" '
    "--attention-png docs/figures/attention-date.png",
    # captioning.md: the built-in scenes, soft attention over the CNN's grid
    "rnnkit data scenes runs/docs/scenes",
    "rnnkit train --task caption --epochs=5 --threads=1 --max-minutes 2 --out runs/docs/caption",
    "rnnkit predict runs/docs/caption runs/docs/scenes/images/test-00001.png "
    "--attention-png docs/figures/caption-attention.png",
    # hopfield.md
    "rnnkit hopfield capacity --neurons 64 --trials 5 --out docs/figures/hopfield-capacity.png",
    "rnnkit hopfield demo --out docs/figures/hopfield-demo.png",
    # forecasting.md
    f"rnnkit train --task forecast --data {TEMPS} --target Temp --window 60 --horizon 7 "
    "--season 365 --forecast_loss=mae --hidden_size=32 --num_layers=1 --epochs=10 --lr=1e-3 "
    "--threads=1 --max-minutes 1 --out runs/docs/temps",
    f"rnnkit eval runs/docs/temps --data {TEMPS}",
    f"rnnkit predict runs/docs/temps --data {TEMPS} --png docs/figures/forecast-temps.png",
    # parallel.md: the same char-LM budget for six cells
    *(f"rnnkit train --cell={cell} {CHAR_LM} --epochs=2 --out runs/docs/lm-{cell}"
      for cell in PARALLEL_CELLS),
    "rnnkit plot curves " + " ".join(f"runs/docs/lm-{cell}" for cell in PARALLEL_CELLS)
    + " --out docs/figures/parallel-curves.png",
]


def figures_of(command):
    """The files under docs/figures/ that ``command`` writes (named in its arguments)."""
    prefix = FIGURES_DIR + "/"
    return [word[len(prefix):] for word in shlex.split(command) if word.startswith(prefix)]


def _shrink_png(path):
    """Rewrite a PNG with a 256-colour palette (matplotlib's figures have few colours)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def _run(command, env):
    """Run one command from the repository root; its wall time. Stops on failure."""
    words = shlex.split(command)
    argv = [sys.executable, "-m", "rnnkit.cli", *words[1:]]
    if words[1] == "train":  # a fresh run, not a continuation of the last make docs
        out = words[words.index("--out") + 1]
        if out.startswith(RUNS_DIR + "/"):
            shutil.rmtree(ROOT / out, ignore_errors=True)
    print(f"$ {command}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"make_figures: exit code {result.returncode} from: {command}")
    for name in figures_of(command):
        path = ROOT / FIGURES_DIR / name
        if not path.is_file():
            sys.exit(f"make_figures: {command!r} did not write {path}")
        if path.suffix == ".png":
            _shrink_png(path)
    print(f"  ({seconds:.1f} s)", flush=True)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="?", help="run only the commands containing this text")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    commands = [c for c in COMMANDS if args.only is None or args.only in c]
    if args.list:
        print("\n".join(commands))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    if args.only is None:
        shutil.rmtree(ROOT / RUNS_DIR, ignore_errors=True)
    (ROOT / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for command in commands:
        _run(command, env)
    print(f"make_figures: {len(commands)} commands in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
