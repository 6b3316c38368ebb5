"""``make demo``: a few minutes of ``rnnkit train`` on the built-in corpus, a sample
and the training curves, on a fresh machine with no data and no download.

Equivalent to::

    rnnkit train --preset char-default --epochs 6 --max-minutes 6 --out runs/demo-DATE
    rnnkit sample runs/demo-DATE --prime "The " --length 400 --seed 1
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rnnkit import cli

__all__ = ["main"]


def main(argv=None):
    out = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    print(f"rnnkit demo: training a character-level LSTM on Python's own documentation "
          f"(pydoc_data.topics) for up to 6 minutes; output in {out}/", flush=True)
    start = time.monotonic()
    rc = cli.main(["train", "--preset", "char-default", "--epochs", "6",
                   "--max-minutes", "6", "--out", str(out), *(argv or [])])
    if rc != 0:
        return rc
    print("\nrnnkit demo: a sample from the best checkpoint (prime 'The '):\n", flush=True)
    rc = cli.main(["sample", str(out), "--prime", "The ", "--length", "400", "--seed", "1"])
    minutes = (time.monotonic() - start) / 60
    print(f"\nrnnkit demo: done in {minutes:.1f} min. Files:\n"
          f"  {out}/curves.png        training and validation loss\n"
          f"  {out}/metrics.csv       every logged step (also TensorBoard: {out}/tb)\n"
          f"  {out}/results.json      best validation and test loss, bits per char\n"
          f"  {out}/checkpoints/best  the model; try: rnnkit sample {out} --prime 'def '")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
