"""``python -m benchmarks.speed [--quick] [--json PATH]``: rnnkit kernels vs torch.nn.

The logic lives in :mod:`rnnkit.bench` so that the installed ``rnnkit bench`` runs the
same thing; see its docstring for what is measured and how.
"""
import sys

from rnnkit.bench import main

if __name__ == "__main__":
    sys.exit(main())
