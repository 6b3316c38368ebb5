"""``rnnkit hopfield capacity`` and ``rnnkit hopfield demo``: the associative memories of
:mod:`rnnkit.models.hopfield` as figures (PNG) and, for capacity, a last-line JSON."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from rnnkit.cli_run import UsageError, at_least

__all__ = ["hopfield_arguments", "run_hopfield", "GLYPHS"]

# 10 x 10 glyphs for the demo ('#' = +1)
GLYPHS = {
    "T": ["##########", "##########", "....##....", "....##....", "....##....",
          "....##....", "....##....", "....##....", "....##....", "....##...."],
    "L": ["##........", "##........", "##........", "##........", "##........",
          "##........", "##........", "##........", "##########", "##########"],
    "X": ["##......##", ".##....##.", "..##..##..", "...####...", "....##....",
          "....##....", "...####...", "..##..##..", ".##....##.", "##......##"],
    "O": ["..######..", ".##....##.", "##......##", "##......##", "##......##",
          "##......##", "##......##", "##......##", ".##....##.", "..######.."],
}


def hopfield_arguments(p):
    """The ``hopfield`` subcommands and their options."""
    kinds = p.add_subparsers(dest="hopfield_kind", metavar="WHAT")
    capacity = kinds.add_parser("capacity", allow_abbrev=False,
                                help="recall rate against load K/N, classic and modern")
    capacity.add_argument("--neurons", type=int, default=100, help="N (default 100)")
    capacity.add_argument("--trials", type=int, default=5,
                          help="random pattern sets per load (default 5)")
    capacity.add_argument("--flip", type=float, default=0.05,
                          help="fraction of bits flipped in each probe (default 0.05)")
    capacity.add_argument("--max-load", type=float, default=0.3,
                          help="largest K/N tried, in steps of 0.02 (default 0.3)")
    capacity.add_argument("--beta", type=float, default=1.0, help="modern network's beta")
    capacity.add_argument("--seed", type=int, default=0)
    capacity.add_argument("--out", default="hopfield-capacity.png", help="the PNG")
    demo = kinds.add_parser("demo", allow_abbrev=False,
                            help="stored glyphs, a corrupted one and its recall steps")
    demo.add_argument("--flip", type=float, default=0.3,
                      help="fraction of the glyph's bits flipped (default 0.3)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="hopfield-demo.png", help="the PNG")
    for sub in (capacity, demo):
        sub.add_argument("--debug", action="store_true",
                         help="show the traceback of an error (also RNNKIT_DEBUG=1)")


def run_hopfield(args):
    """Dispatch to ``capacity`` or ``demo``; the exit code."""
    from rnnkit.training.rundir import check_output_file

    if args.hopfield_kind is None:
        raise UsageError("hopfield: say what: capacity or demo")
    if not (0 <= args.flip < 0.5 and math.isfinite(args.flip)):
        raise UsageError(f"--flip must be in [0, 0.5), got {args.flip}")
    if Path(args.out).suffix.lower() != ".png":
        raise UsageError(f"--out must end in .png, got {args.out!r}")
    check_output_file(args.out, "--out")
    return _capacity(args) if args.hopfield_kind == "capacity" else _demo(args)


def _capacity(args):
    from rnnkit.models.hopfield import capacity_curve, knee
    from rnnkit.viz.hopfield import plot_capacity

    at_least("--neurons", args.neurons, 4)
    at_least("--trials", args.trials, 1)
    if not (0.02 <= args.max_load <= 4 and math.isfinite(args.max_load)):
        raise UsageError(f"--max-load must be in [0.02, 4], got {args.max_load}")
    if not (args.beta > 0 and math.isfinite(args.beta)):
        raise UsageError(f"--beta must be > 0 and finite, got {args.beta}")
    loads = [round(0.02 * i, 2) for i in range(1, int(round(args.max_load / 0.02)) + 1)]
    rates = capacity_curve(args.neurons, loads, args.trials, args.flip, args.beta,
                           args.seed)
    found = {name: knee(loads, rates[name]) for name in rates}
    plot_capacity(loads, rates, found["classic"], args.neurons, args.flip, args.out)
    for i, load in enumerate(loads):
        print(f"load {load:.2f}  K {max(1, round(load * args.neurons)):4d}  classic "
              f"{rates['classic'][i]:.2f}  modern {rates['modern'][i]:.2f}")
    print(f"rnnkit hopfield: figure in {args.out}", file=sys.stderr)
    print(json.dumps({"neurons": args.neurons, "flip": args.flip, "trials": args.trials,
                      "knee": found["classic"], "modern_knee": found["modern"],
                      "loads": loads, "classic": rates["classic"],
                      "modern": rates["modern"]}))
    return 0


def glyph_patterns():
    """The demo glyphs as a (4, 100) tensor of ±1 and their names."""
    import torch

    rows = [[1.0 if c == "#" else -1.0 for c in "".join(g)] for g in GLYPHS.values()]
    return torch.tensor(rows), list(GLYPHS)


def _demo(args):
    import torch

    from rnnkit.models.hopfield import Hopfield, _corrupt
    from rnnkit.viz.hopfield import plot_demo

    patterns, names = glyph_patterns()
    net = Hopfield(patterns.size(1))
    net.store(patterns)
    generator = torch.Generator().manual_seed(args.seed)
    probe = _corrupt(patterns[:1], args.flip, generator)[0]
    states = net.trajectory(probe, generator=generator)
    energies = [float(net.energy(s)) for s in states]
    plot_demo(patterns, names, states, energies, args.out)
    recalled = bool(torch.equal(states[-1], patterns[0]))
    print(f"rnnkit hopfield: figure in {args.out}", file=sys.stderr)
    print(json.dumps({"glyph": names[0], "flip": args.flip, "sweeps": len(states) - 1,
                      "recalled": recalled, "energies": energies}))
    return 0
