"""Training speed of the parallel recurrences (IndRNN, SRU, QRNN, minGRU, minLSTM) beside
torch.nn.LSTM, rnnkit's LSTM and, when they are importable, the public CPU
implementations: the ``sru`` package's SRU and ``mingru-pytorch``'s minGRU.

    python -m benchmarks.recurrences [--threads N] [--repeats R] [--public DIR]

Each entry is forward + backward of one layer on (T, B, I) input, loss = output.sum(),
the median of R interleaved repeats, each repeat a batch of calls lasting about 50 ms.
"x LSTM" is torch.nn.LSTM's time divided by the entry's (above 1: faster). The public
packages are never rnnkit dependencies: install them for the benchmark only, e.g.
``pip install --no-deps --target /tmp/benchpkgs sru mingru-pytorch`` and pass
``--public /tmp/benchpkgs``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch

import rnnkit

SHAPES = [(35, 20, 650, 650), (1000, 1, 64, 64)]


def _contenders(input_size, hidden_size, public):
    """(name, module, batch_first) for every implementation at this size."""
    make = {
        "torch.nn.LSTM": lambda: torch.nn.LSTM(input_size, hidden_size),
        "rnnkit LSTM": lambda: rnnkit.LSTM(input_size, hidden_size),
        "rnnkit IndRNN": lambda: rnnkit.IndRNN(input_size, hidden_size),
        "rnnkit SRU": lambda: rnnkit.SRU(input_size, hidden_size),
        "rnnkit QRNN": lambda: rnnkit.QRNN(input_size, hidden_size),
        "rnnkit MinGRU": lambda: rnnkit.MinGRU(input_size, hidden_size),
        "rnnkit MinLSTM": lambda: rnnkit.MinLSTM(input_size, hidden_size),
    }
    found = [(name, build(), False) for name, build in make.items()]
    if public:
        found += _public_contenders(input_size, hidden_size)
    return found


def _public_contenders(input_size, hidden_size):
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sru warns that it cannot compile its CUDA kernels
        try:
            import sru
            found.append(("sru package SRU", sru.SRU(input_size, hidden_size, num_layers=1),
                          False))
        except Exception as error:  # noqa: BLE001 - report and go on without it
            print(f"(sru package not usable: {type(error).__name__}: {error})")
        try:
            from minGRU_pytorch import minGRU
            if input_size == hidden_size:
                found.append(("mingru-pytorch minGRU", minGRU(hidden_size), True))
        except Exception as error:  # noqa: BLE001
            print(f"(mingru-pytorch not usable: {type(error).__name__}: {error})")
    return found


def _step(module, x):
    output = module(x)
    output = output[0] if isinstance(output, tuple) else output
    output.sum().backward()


def _calls_for(module, x, budget=0.05):
    """How many calls make one repeat last about ``budget`` seconds."""
    start = time.perf_counter()
    _step(module, x)
    elapsed = time.perf_counter() - start
    return max(1, int(budget / max(elapsed, 1e-6)))


def measure(shape, repeats, public):
    """{name: median ms of forward + backward} at ``shape``, interleaved."""
    T, B, I, H = shape
    torch.manual_seed(0)
    contenders = _contenders(I, H, public)
    inputs = {}
    for name, module, batch_first in contenders:
        x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
        inputs[name] = x.requires_grad_()
        _step(module, inputs[name])  # warm-up (builds, allocators)
    calls = {name: _calls_for(module, inputs[name]) for name, module, _ in contenders}
    times = {name: [] for name, _, _ in contenders}
    for _ in range(repeats):
        for name, module, _ in contenders:
            start = time.perf_counter()
            for _ in range(calls[name]):
                _step(module, inputs[name])
            times[name].append((time.perf_counter() - start) / calls[name] * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (default 0: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--public", default="",
                        help="a folder holding the sru and minGRU_pytorch packages")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.public:
        sys.path.insert(0, args.public)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats}; forward + backward of one layer, ms (x torch.nn.LSTM)\n")
    for shape in SHAPES:
        results = measure(shape, args.repeats, bool(args.public))
        base = results["torch.nn.LSTM"]
        print(f"(T, B, I, H) = {shape}\n\n| implementation | ms | x torch.nn.LSTM |\n|---|---|---|")
        for name, ms in results.items():
            print(f"| {name} | {ms:.3g} | {base / ms:.2f}x |")
        print()


if __name__ == "__main__":
    main()
