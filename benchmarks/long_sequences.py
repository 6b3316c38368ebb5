"""Peak memory of one training step on long sequences, plain and with activation
checkpointing (``checkpoint_steps``): the plain step's memory grows linearly in T, the
checkpointed one's by T/K carried states plus K steps of activations.

    python -m benchmarks.long_sequences [--cell lstm] [--hidden 256] [--batch 8]

Each entry runs in a fresh process: peak resident memory (ru_maxrss) after one forward +
backward minus before it, in MiB.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, torch, rnnkit
from rnnkit.layers import make_layer
cell, hidden, batch, steps, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
layer = make_layer(cell, hidden, hidden, checkpoint_steps=chunk)
x = torch.randn(steps, batch, hidden, requires_grad=True)
layer(torch.randn(8, batch, hidden))[0].sum().backward()  # warm-up: build, allocators
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out, _ = layer(x)
out.square().mean().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mib": (after - before) / 1024, "finite": bool(torch.isfinite(x.grad).all())}))
"""


def measure(cell, hidden, batch, steps, chunk):
    result = subprocess.run([sys.executable, "-c", CHILD, cell, str(hidden), str(batch),
                             str(steps), str(chunk)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--steps", default="1000,2000,4000,8000")
    args = parser.parse_args(argv)
    print(f"{args.cell}, H_in = H = {args.hidden}, B = {args.batch}; peak MiB of one training "
          f"step\n\n| T | plain | checkpoint_steps={args.chunk} | plain MiB per 1000 steps |")
    print("|---|---|---|---|")
    for steps in map(int, args.steps.split(",")):
        plain = measure(args.cell, args.hidden, args.batch, steps, 0)
        chunked = measure(args.cell, args.hidden, args.batch, steps, args.chunk)
        print(f"| {steps} | {plain['mib']:.0f} | {chunked['mib']:.0f} | "
              f"{plain['mib'] / steps * 1000:.1f} |")


if __name__ == "__main__":
    main()
