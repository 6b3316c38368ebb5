"""``python -m benchmarks.gemm_peak [--repeats 20]``: the matrix-product rate of this machine.

The word LM's output layer is three GEMMs per step (forward ``(T·N, H) x (H, V)``, and two
in backward), the same ``torch.mm`` / MKL calls whether the model is rnnkit's or plain
torch.nn's. This script times ``torch.mm`` at those shapes (ptb-small, ptb-medium, and a
square one for the peak) at one thread and at torch's default threads, min of
``--repeats`` calls, and prints GFLOPS (2·M·K·N / time). When they sit near the core's
peak, the output layer cannot be made faster by rewriting it, and a whole-step ratio
against torch.nn is bounded by the recurrent layers' share of the step (RESULTS.md,
"Word-LM training step against plain torch.nn").
"""
from __future__ import annotations

import argparse
import time

import torch

SHAPES = [  # (M, K, N): rows T·N, inner H, columns V
    ("ptb-small output forward (400 x 200 x 10000)", 400, 200, 10000),
    ("ptb-medium output forward (700 x 650 x 10000)", 700, 650, 10000),
    ("ptb-medium LSTM input GEMM (700 x 650 x 2600)", 700, 650, 2600),
    ("square (2048 x 2048 x 2048)", 2048, 2048, 2048),
]


def gflops(m, k, n, repeats):
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - begin)
    return best * 1e3, 2 * m * k * n / best / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    default = torch.get_num_threads()
    print(f"torch {torch.__version__}, default threads {default}, "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"\n| shape | 1 thread ms | 1 thread GFLOPS | {default} threads ms | "
          f"{default} threads GFLOPS |\n|---|---|---|---|---|")
    for name, m, k, n in SHAPES:
        row = []
        for threads in (1, default):
            torch.set_num_threads(threads)
            row += gflops(m, k, n, args.repeats)
        torch.set_num_threads(default)
        print(f"| {name} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
