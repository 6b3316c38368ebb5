"""Speed and memory of the rnnkit kernels side by side with torch.nn (``rnnkit bench``).

For each cell and shape (T, B, H_in, H) it times, interleaved in one run and reported as
medians: the fused C++ kernel, the hand-written ``bptt`` kernel, the ``reference`` kernel
and torch.nn (for variants torch.nn lacks, torch.nn.LSTM at the same shape is the
yardstick), training (forward + backward) and inference (forward only, no grad). Beside
them it times the GEMMs the fused recipe performs (the same sizes, ``torch.mm`` into
preallocated outputs), so "%GEMM" says how close the kernel comes to the machine's
matrix-multiply speed. Single-step decode rows time one step of an LSTM/GRU cell, and
memory rows measure the peak resident memory of one training step, each in a fresh
process (``ru_maxrss`` after the step minus before it).

Timings on a shared machine are noisy: the kernels are interleaved, each repeat times a
batch of calls lasting about 50 ms (5 ms for a decoding step), and each entry is the
median of several repeats; ``torch.get_num_threads()`` threads everywhere.

``rnnkit bench lm`` (``python -m rnnkit.bench lm``) times a whole word-LM training step
against plain torch.nn instead: :mod:`rnnkit.bench_lm`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from rnnkit.cells import CellSpec
from rnnkit.kernels import bptt, reference
from rnnkit.timing import interleaved_times

__all__ = ["add_arguments", "run", "main", "SHAPES", "CELLS"]

SHAPES = [(50, 8, 64, 128), (100, 32, 128, 256), (35, 20, 650, 650), (35, 64, 512, 512),
          (1000, 1, 32, 64)]
CELLS = {  # name: (family, CellSpec options, zoneout)
    "rnn-tanh": ("rnn", {}, False),
    "lstm": ("lstm", {}, False),
    "lstm-peephole": ("lstm", {"peephole": True}, False),
    "lstm-layernorm": ("lstm", {"layer_norm": True}, False),
    "lstm-zoneout": ("lstm", {}, True),
    "gru": ("gru", {}, False),
}
QUICK_CELLS = ["rnn-tanh", "lstm", "lstm-layernorm", "gru"]
QUICK_SHAPES = [(50, 8, 64, 128)]
TORCH_MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
_NOISY_SPREAD = 2.0  # max/min over the repeats above which an entry is flagged


def _median_times(functions: dict, repeats: int, spreads: dict | None = None,
                  min_time: float = 0.05) -> dict:
    """Median seconds per call of each function (:func:`interleaved_times`). ``spreads``,
    if given, receives each function's max/min ratio over the repeats: a large one means
    the machine interfered."""
    times = interleaved_times(functions, repeats, min_time)
    if spreads is not None:
        spreads.update({name: max(ts) / max(min(ts), 1e-12) for name, ts in times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine_load_warning(threads: int) -> str | None:
    """A warning when timings with several threads cannot be trusted on this machine.

    With more than one intra-op thread every parallel region ends at a barrier: when
    another process occupies the other cores, a descheduled OpenMP worker holds the region
    up for a scheduler time slice (milliseconds), and an idle worker that went to sleep
    must first be woken. A call of ~1.4 ms with one parallel region (the LSTM inference at
    (50, 8, 64, 128): only its input projection is big enough to be split) can then take
    ~10 ms in most repeats, the likely cause of that entry's 0.14x torch.nn in one
    ``rnnkit bench --quick`` run at torch's default 2 threads; at one thread it measures
    about 1x. Which entries are hit is luck, so such a run cannot be compared.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None
    cores = os.cpu_count() or 1
    if threads > 1 and load + threads > cores + 0.5:
        return (f"warning: {threads} threads with load average {load:.1f} on {cores} cores: "
                f"parallel regions wait for descheduled threads, timings are unreliable "
                f"(use --threads 1 on a shared machine)")
    return None


def _problem(cell: str, shape, seed=0):
    """spec, x, state0, params (leaves requiring grad) and the torch.nn yardstick module."""
    family, options, zoneout = CELLS[cell]
    T, B, I, H = shape
    torch.manual_seed(seed)
    spec = CellSpec(family, I, H, **options)
    module = TORCH_MODULES[family](I, H)
    params = {}
    for name, size in spec.param_shapes().items():
        torch_param = getattr(module, f"{name}_l0", None)
        if torch_param is not None:
            value = torch_param.detach().clone()
        elif name.startswith("ln_") and name.endswith("_weight"):
            value = torch.ones(size)
        else:
            value = torch.empty(size).uniform_(-H ** -0.5, H ** -0.5)
        params[name] = value.requires_grad_()
    x = torch.randn(T, B, I, requires_grad=True)
    state0 = tuple(torch.zeros(B, size) for size in spec.state_sizes)
    options = {}
    if zoneout:
        options["zoneout"] = tuple((torch.rand(T, B, size) < 0.1).float()
                                   for size in spec.state_sizes)
    return spec, x, state0, params, module, options


def _kernel_step(kernel, spec, x, state0, params, options, train: bool):
    inputs = [x, *params.values()]

    def step():
        if not train:
            with torch.no_grad():
                kernel(spec, x, state0, params, **options)
            return
        outputs, _ = kernel(spec, x, state0, params, **options)
        torch.autograd.grad(outputs.sum(), inputs)
    return step


def _torch_step(module, x, train: bool):
    inputs = [x, *module.parameters()]

    def step():
        if not train:
            with torch.no_grad():
                module(x)
            return
        outputs, _ = module(x)
        torch.autograd.grad(outputs.sum(), inputs)
    return step


def _gemm_step(spec, shape, train: bool):
    """Exactly the GEMMs of the fused recipe, with torch.mm into preallocated outputs."""
    T, B, I, H = shape
    G, P = spec.gates * H, spec.output_size
    a = {k: torch.randn(*s) for k, s in {
        "x": (T * B, I), "w_ih": (G, I), "w_hh": (G, P), "h": (B, P), "z": (B, G),
        "xp": (T * B, G), "dz": (T * B, G), "hs": (T * B, P), "dx": (T * B, I),
        "dw_ih": (G, I), "dw_hh": (G, P), "dh": (B, P)}.items()}

    def step():
        torch.mm(a["x"], a["w_ih"].t(), out=a["xp"])
        for _ in range(T):
            torch.mm(a["h"], a["w_hh"].t(), out=a["z"])
        if not train:
            return
        for _ in range(T):
            torch.mm(a["z"], a["w_hh"], out=a["dh"])
        torch.mm(a["dz"].t(), a["x"], out=a["dw_ih"])
        torch.mm(a["dz"].t(), a["hs"], out=a["dw_hh"])
        torch.mm(a["dz"], a["w_ih"], out=a["dx"])
    return step


def _flops(spec, shape, train: bool) -> float:
    """Multiply-add FLOPs of the GEMMs (the pointwise work is not counted)."""
    T, B, I, H = shape
    G, P = spec.gates * H, spec.output_size
    forward = 2.0 * T * B * G * (I + P)
    return 3 * forward if train else forward


def bench_speed(cells, shapes, repeats, kernels, log=print):
    """Rows of the speed table, one per (cell, shape, mode)."""
    from rnnkit.kernels import cpu
    impls = {"fused": cpu.run, "bptt": bptt.run, "reference": reference.run}
    rows = []
    for shape in shapes:
        for cell in cells:
            spec, x, state0, params, module, options = _problem(cell, shape)
            for train in (True, False):
                functions = {name: _kernel_step(impls[name], spec, x, state0, params, options,
                                                train) for name in kernels}
                functions["torch"] = _torch_step(module, x, train)
                functions["gemm"] = _gemm_step(spec, shape, train)
                spreads = {}
                times = _median_times(functions, repeats, spreads)
                row = _speed_row(cell, shape, train, spec, times)
                row["spread"] = {k: round(v, 2) for k, v in spreads.items()}
                rows.append(row)
                log(_format_row(row, kernels))
    return rows


def _speed_row(cell, shape, train, spec, times):
    flops = _flops(spec, shape, train)
    return {
        "cell": cell, "shape": list(shape), "mode": "train" if train else "infer",
        "ms": {k: round(v * 1e3, 3) for k, v in times.items()},
        "speedup_vs_torch": {k: round(times["torch"] / v, 3) for k, v in times.items()
                             if k not in ("torch", "gemm")},
        "fused_vs_reference": (round(times["reference"] / times["fused"], 2)
                               if "reference" in times else None),
        "fused_gflops": round(flops / times["fused"] / 1e9, 1),
        "gemm_gflops": round(flops / times["gemm"] / 1e9, 1),
        "percent_of_gemm": round(100 * times["gemm"] / times["fused"], 1),
    }


def _format_row(row, kernels):
    ms, up = row["ms"], row["speedup_vs_torch"]
    cells = [row["cell"], str(tuple(row["shape"])), row["mode"]]
    cells += [f"{ms[k]:.2f} ({up[k]:.2f}x)" for k in kernels]
    cells += [f"{ms['torch']:.2f}", f"{row['fused_gflops']:.1f}", f"{row['gemm_gflops']:.1f}",
              f"{row['percent_of_gemm']:.0f}%"]
    spread = row.get("spread", {})
    noisy = [k for k in ("fused", "torch") if spread.get(k, 1) > _NOISY_SPREAD]
    if noisy:  # the slowest repeat over twice the fastest: the machine interfered
        cells[-1] += " (noisy: " + ", ".join(f"{k} {spread[k]:.1f}x" for k in noisy) + ")"
    return "| " + " | ".join(cells) + " |"


def _table_header(kernels):
    names = ["cell", "(T, B, H_in, H)", "mode", *(f"{k} ms (x torch)" for k in kernels),
             "torch.nn ms", "fused GFLOP/s", "GEMM GFLOP/s", "fused/GEMM"]
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def bench_decode(repeats, log=print, input_size=256, hidden_size=256):
    """One step of LSTMCell / GRUCell (inference) at B=1 and B=64: fused vs torch.nn."""
    from rnnkit.kernels import cpu
    from rnnkit.layers import GRUCell, LSTMCell
    rows = []
    for family, torch_cell, rnnkit_cell in (("lstm", torch.nn.LSTMCell, LSTMCell),
                                            ("gru", torch.nn.GRUCell, GRUCell)):
        for batch in (1, 64):
            spec = CellSpec(family, input_size, hidden_size)
            cell = torch_cell(input_size, hidden_size)
            ours = rnnkit_cell(input_size, hidden_size)
            params = {n: p.detach() for n, p in ours.named_parameters()}
            x = torch.randn(batch, input_size)
            x3 = x.unsqueeze(0)
            state = tuple(torch.zeros(batch, s) for s in spec.state_sizes)
            torch_state = state if family == "lstm" else state[0]

            def fused():
                with torch.no_grad():
                    cpu.run(spec, x3, state, params)

            def layer():
                with torch.no_grad():
                    ours(x, torch_state)

            def torch_nn():
                with torch.no_grad():
                    cell(x, torch_state)
            times = _median_times({"fused": fused, "rnnkit_cell": layer, "torch": torch_nn},
                                  repeats, min_time=0.005)
            row = {"cell": f"{family}-decode", "batch": batch,
                   "us": {k: round(v * 1e6, 1) for k, v in times.items()},
                   "speedup_vs_torch": {k: round(times["torch"] / times[k], 2)
                                        for k in ("fused", "rnnkit_cell")}}
            rows.append(row)
            log(f"| {family} step | B={batch}, H_in=H={hidden_size} | "
                f"{row['us']['fused']:.1f} ({row['speedup_vs_torch']['fused']:.2f}x) | "
                f"{row['us']['rnnkit_cell']:.1f} ({row['speedup_vs_torch']['rnnkit_cell']:.2f}x)"
                f" | {row['us']['torch']:.1f} |")
    return rows


_MEMORY_SCRIPT = """
import ctypes, gc, sys, torch
from rnnkit import bench
from rnnkit.kernels import cpu
cell, which, shape = sys.argv[1], sys.argv[2], tuple(map(int, sys.argv[3:7]))
torch.set_num_threads(int(sys.argv[7]))
spec, x, state0, params, module, options = bench._problem(cell, shape)
if which == "fused":
    cpu.load()
    step = bench._kernel_step(cpu.run, spec, x, state0, params, options, True)
else:
    step = bench._torch_step(module, x, True)
step()  # one-time allocations (primitive caches, BLAS buffers) are not the step's


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set size (VmHWM) to the current one
before = status("VmRSS:")
step()
print((status("VmHWM:") - before) / 1024)
"""


def bench_memory(cells, shapes, log=print):
    """Peak resident memory (MiB) added by one training step, each in a fresh process.

    After a warm-up step, the process's peak RSS (VmHWM) is reset to its current RSS
    (``/proc/self/clear_refs``), one more step runs, and the new peak minus the RSS before
    it is reported: every allocation counts (ATen, oneDNN, BLAS), Linux only.
    """
    rows = []
    for shape in shapes:
        for cell in cells:
            peaks = {}
            for which in ("fused", "torch"):
                result = subprocess.run(
                    [sys.executable, "-c", _MEMORY_SCRIPT, cell, which, *map(str, shape),
                     str(torch.get_num_threads())], capture_output=True, text=True,
                    check=True)
                peaks[which] = float(result.stdout.strip().splitlines()[-1])
            row = {"cell": cell, "shape": list(shape), "peak_mib": peaks,
                   "ratio": round(peaks["fused"] / max(peaks["torch"], 1e-9), 2)}
            rows.append(row)
            log(f"| {cell} | {tuple(shape)} | {peaks['fused']:.1f} | {peaks['torch']:.1f} | "
                f"{row['ratio']:.2f} |")
    return rows


def add_arguments(parser: argparse.ArgumentParser):
    from rnnkit.bench_lm import add_lm_arguments

    parser.add_argument("mode", nargs="?", default="kernels", choices=("kernels", "lm"),
                        help="kernels (default): the cells' kernels against torch.nn; lm: a "
                             "whole word-LM training step against plain torch.nn "
                             "(rnnkit.bench_lm)")
    parser.add_argument("--quick", action="store_true",
                        help="a subset (one small shape, four cells) in under a minute")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per entry (median; default 7, quick 5)")
    parser.add_argument("--cells", help=f"comma-separated subset of {', '.join(CELLS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory rows")
    parser.add_argument("--threads", type=int,
                        help="torch.set_num_threads (default or 0: torch's)")
    add_lm_arguments(parser)


def run(args) -> int:
    """Run the benchmark described by parsed ``args``; print tables; 0 on success."""
    from rnnkit.kernels import cpu
    from rnnkit.training.rundir import check_output_file

    for flag, value, minimum in (("--threads", args.threads, 0),
                                 ("--repeats", args.repeats, 1)):
        if value is not None and value < minimum:
            print(f"rnnkit bench: error: {flag} must be >= {minimum}, got {value}",
                  file=sys.stderr)
            return 2
    if args.json is not None:
        check_output_file(args.json, "--json")  # before the minutes of work, not after
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "lm":
        from rnnkit.bench_lm import run_lm
        return run_lm(args)
    reason = cpu.unavailable_reason()
    if reason is not None:
        print(f"rnnkit bench: fused CPU kernel unavailable ({reason})", file=sys.stderr)
        return 1
    cells = args.cells.split(",") if args.cells else (QUICK_CELLS if args.quick else list(CELLS))
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        print(f"rnnkit bench: unknown cells {unknown}; choose from {list(CELLS)}",
              file=sys.stderr)
        return 2
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = args.repeats or (5 if args.quick else 7)
    kernels = ["fused", "bptt", "reference"]
    warning = machine_load_warning(torch.get_num_threads())
    if warning:
        print(warning, file=sys.stderr)
    try:
        load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:  # pragma: no cover
        load = ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{load}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, median of {repeats}")
    print("\nTraining (forward + backward) and inference; speed-up = torch.nn time / time\n")
    print(_table_header(kernels))
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__,
               "repeats": repeats, "load_warning": warning}
    results["speed"] = bench_speed(cells, shapes, repeats, kernels)
    print("\nSingle-step decode (inference), microseconds (x torch.nn)\n")
    print("| cell | shape | cpu.run T=1 | rnnkit cell | torch.nn cell |\n|---|---|---|---|---|")
    results["decode"] = bench_decode(max(repeats, 50))
    if not args.no_memory:
        memory_cells = ["lstm", "gru"] if args.quick else ["rnn-tanh", "lstm", "gru",
                                                            "lstm-layernorm"]
        print("\nPeak memory of one training step (MiB above the process before the step)\n")
        print("| cell | (T, B, H_in, H) | fused | torch.nn | fused/torch |\n|---|---|---|---|---|")
        results["memory"] = bench_memory(memory_cells, shapes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
