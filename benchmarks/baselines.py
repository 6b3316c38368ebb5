"""Training and sampling speed of the char-LM baselines beside LSTM and GRU, interleaved.

The four models of RESULTS.md's baseline comparison (~946k parameters each, embedding
128, vocabulary 65): each round times a few training steps (forward, backward, Adam) on
a 100 x 64 chunk and a few sampled characters for every model in turn, so a machine
whose load drifts slows all of them alike; the table shows each model's median over the
rounds. Prints a markdown table::

    python -m benchmarks.baselines --threads 1 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnkit.models import CharLM

MODELS = {
    "lstm": dict(hidden_size=256, num_layers=2, cell="lstm"),
    "gru": dict(hidden_size=298, num_layers=2, cell="gru"),
    "tcn": dict(hidden_size=136, num_layers=7, arch="tcn", kernel_size=3),
    "transformer": dict(hidden_size=136, num_layers=4, arch="transformer", num_heads=4,
                        context_size=128),
}


def train_rate(model, optimizer, steps, bptt=100, batch=64):
    """Characters per second of training steps, the state carried as in training."""
    inputs = torch.randint(0, 65, (bptt, batch))
    state, start = None, time.perf_counter()
    for _ in range(steps):
        logits, state = model(inputs, state)
        state = (state.detach() if isinstance(state, torch.Tensor)
                 else tuple(s.detach() for s in state))
        loss = model.loss(logits, inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * bptt * batch / (time.perf_counter() - start)


def sample_rate(model, length):
    start = time.perf_counter()
    model.generate([0, 1, 2], length, generator=torch.Generator().manual_seed(0))
    return length / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument("--length", type=int, default=200, help="sampled characters per round")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: CharLM(65, embed_size=128, **kw) for name, kw in MODELS.items()}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=2e-3) for name, m in models.items()}
    train, sample = {n: [] for n in models}, {n: [] for n in models}
    for name, model in models.items():  # warm-up (first calls build kernels, caches)
        train_rate(model, optimizers[name], 1)
    for _ in range(args.rounds):
        for name, model in models.items():
            train[name].append(train_rate(model.train(), optimizers[name], args.steps))
            sample[name].append(sample_rate(model, args.length))
    print(f"threads {args.threads}, {args.rounds} rounds of {args.steps} steps (100 x 64) "
          f"and {args.length} sampled characters, medians\n")
    print("| model | parameters | training chars/s | sampling chars/s |\n|---|---|---|---|")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params:,} | {statistics.median(train[name]):,.0f} | "
              f"{statistics.median(sample[name]):,.0f} |")


if __name__ == "__main__":
    main()
