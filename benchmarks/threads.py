"""``python -m benchmarks.threads [--cells lstm,gru] [--repeats 7]``: threads per kernel call.

A parallel region costs a fork and a join; below some amount of work that costs more than
the second thread gives. The fused kernels therefore run a whole call on the calling
thread when its work (about: the weights times T times B multiply-adds, twice that
backward) is below a threshold (``rnnkit.kernels.cpu.set_parallel_min_work``; its default
is the one chosen from this script's table). This script times, interleaved in one run
(medians, training = forward + backward, like ``rnnkit bench``), for each cell and shape:

- ``split``: the fused kernel at torch's default threads, every call split across them
  (threshold 0: the behaviour before the threshold existed);
- ``auto``: the same at the default threshold;
- ``1 thread``: the fused kernel with ``torch.set_num_threads(1)``;
- torch.nn at the default threads and at one thread.

The goal of the threshold: ``auto`` never slower than ``1 thread`` (beyond noise), and as
fast as ``split`` where splitting pays.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from rnnkit.bench import CELLS, SHAPES, _kernel_step, _median_times, _problem, _torch_step


def _with_threads(threads: int, work: int | None, f):
    from rnnkit.kernels import cpu

    def call():
        torch.set_num_threads(threads)
        if work is not None:
            cpu.set_parallel_min_work(work)
        f()
    return call


def main(argv=None) -> int:
    from rnnkit.kernels import cpu

    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="rnn-tanh,lstm,gru",
                        help=f"comma-separated subset of {', '.join(CELLS)}")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    reason = cpu.unavailable_reason()
    if reason is not None:
        print(f"fused CPU kernel unavailable ({reason})", file=sys.stderr)
        return 1
    threads = torch.get_num_threads()
    default = cpu.set_parallel_min_work(0)
    cpu.set_parallel_min_work(default)
    print(f"torch {torch.__version__}, default {threads} threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, default threshold "
          f"{default:,} multiply-adds, median of {args.repeats}, training (forward + backward)")
    print("\n| cell | (T, B, H_in, H) | work fwd | split ms | auto ms | 1 thread ms | "
          "torch.nn ms | torch.nn 1t ms | auto / 1 thread | auto vs torch.nn |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        for cell in args.cells.split(","):
            spec, x, state0, params, module, options = _problem(cell, shape)
            fused = _kernel_step(cpu.run, spec, x, state0, params, options, train=True)
            torch_nn = _torch_step(module, x, train=True)
            T, B = shape[0], shape[1]
            work = sum(p.numel() for p in params.values()) * T * B
            functions = {
                "split": _with_threads(threads, 0, fused),
                "auto": _with_threads(threads, default, fused),
                "one": _with_threads(1, default, fused),
                "torch": _with_threads(threads, None, torch_nn),
                "torch1": _with_threads(1, None, torch_nn),
            }
            t = _median_times(functions, args.repeats)
            torch.set_num_threads(threads)
            cpu.set_parallel_min_work(default)
            print(f"| {cell} | {shape} | {work / 1e6:.0f}M | {t['split'] * 1e3:.2f} | "
                  f"{t['auto'] * 1e3:.2f} | {t['one'] * 1e3:.2f} | {t['torch'] * 1e3:.2f} | "
                  f"{t['torch1'] * 1e3:.2f} | {t['one'] / t['auto']:.2f}x | "
                  f"{t['torch'] / t['auto']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
