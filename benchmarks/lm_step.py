"""``python -m benchmarks.lm_step [--threads N] [--softmax full,sampled,adaptive]``: one
whole word-LM training step, rnnkit's WordLM against the same model in plain torch.nn.

The same as ``rnnkit bench lm`` (the logic lives in :mod:`rnnkit.bench_lm`); see its
docstring for what is measured and how.
"""
import sys

from rnnkit.bench import main

if __name__ == "__main__":
    sys.exit(main(["lm", *sys.argv[1:]]))
