"""Full against sampled (and adaptive) softmax on WikiText-2: tokens/s and test perplexity
after the same training steps.

The same small word LM (2 x 200 LSTM, tied 200-wide embedding, U(-0.1, 0.1) init, no
dropout (adaptive: untied); SGD lr 20, clip 0.25, T = 20, B = 20: Zaremba's small recipe) is trained with
each output layer from the same initial weights (the output layers aside) on the same
first ``--steps`` chunks of WikiText-2's training split (V = 33,278), through
:class:`rnnkit.training.trainer.Trainer`'s own step. The models train interleaved, a
block of ``--block`` steps each in turn, so a machine whose load drifts slows them
alike; tokens/s counts the training steps only. Then each is scored on the whole test
split with the exact softmax (sampled: the full softmax of its trained decoder)::

    python -m benchmarks.softmax_wikitext2 --steps 600 --threads 1
    python -m benchmarks.softmax_wikitext2 --epochs 1 --threads 1   # the whole split once
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from rnnkit.cli import build_lm
from rnnkit.data.datasets import load_corpus
from rnnkit.data.text import batchify, get_batch, num_batches
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.metrics import lm_metrics
from rnnkit.training.trainer import Trainer, evaluate_totals

RECIPE = {"embed_size": "200", "hidden_size": "200", "num_layers": "2", "dropout": "0",
          "tie_weights": "true", "init_range": "0.1", "optimizer": "sgd", "lr": "20",
          "clip": "0.25", "batch_size": "20", "bptt": "20", "eval_batch_size": "10",
          "seed": "1"}


def make_trainer(corpus, softmax, num_samples):
    recipe = {**RECIPE, "softmax": softmax, "num_samples": str(num_samples)}
    if softmax == "adaptive":  # it has no (V, H) weight to tie
        recipe["tie_weights"] = "false"
    config = apply_overrides(Config(), recipe).validate()
    torch.manual_seed(config.train.seed)
    model = build_lm(config.model, corpus.vocab, corpus)
    return Trainer(model, corpus, config)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--epochs", type=float, default=0.0,
                   help="> 0: train this many epochs of the training split instead of --steps")
    p.add_argument("--block", type=int, default=25, help="steps per turn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--softmax", default="full,sampled")
    p.add_argument("--num-samples", type=int, default=1024)
    p.add_argument("--test-tokens", type=int, default=0,
                   help="score only the first N test tokens (0 = all; a quick check)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    corpus = load_corpus("wikitext-2")
    names = args.softmax.split(",")
    trainers = {name: make_trainer(corpus, name, args.num_samples) for name in names}
    first = next(iter(trainers.values()))
    bptt = first.config.train.bptt
    per_epoch = num_batches(first.train_data, bptt)  # the last chunk may be shorter
    if args.epochs > 0:
        args.steps = round(args.epochs * per_epoch)
    print(f"{args.steps} steps = {args.steps / per_epoch:.3f} epochs ({per_epoch} per epoch)",
          flush=True)
    seconds, losses = {n: 0.0 for n in names}, {n: [] for n in names}
    for start in range(0, args.steps, args.block):
        for name, trainer in trainers.items():
            begin = time.perf_counter()
            for index in range(start, min(start + args.block, args.steps)):
                inputs, targets = get_batch(trainer.train_data, index % per_epoch, bptt)
                losses[name].append(trainer.step(inputs, targets))
                trainer.step_count += 1
            seconds[name] += time.perf_counter() - begin
        print(f"step {min(start + args.block, args.steps)}: " + ", ".join(
            f"{n} train loss {sum(losses[n][-args.block:]) / len(losses[n][-args.block:]):.3f}"
            for n in names), flush=True)
    tokens = sum(get_batch(first.train_data, i % per_epoch, bptt)[0].numel()
                 for i in range(args.steps))
    rows = {}
    for name, trainer in trainers.items():
        begin = time.perf_counter()
        test_stream = corpus.test[:args.test_tokens] if args.test_tokens else corpus.test
        total = evaluate_totals(trainer.model, batchify(test_stream, 10), 20)
        test = lm_metrics(float(total[0] / total[1]), "word")
        rows[name] = {"train_s": round(seconds[name], 1),
                      "tokens_per_s": round(tokens / seconds[name], 1),
                      "test_ppl": round(test["ppl"], 2), "test_tokens": int(total[1]),
                      "eval_s": round(time.perf_counter() - begin, 1)}
        print(f"{name}: {rows[name]}", flush=True)
    print(f"\n| softmax | train tokens/s | test ppl after {args.steps} steps |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['tokens_per_s']:,.0f} | {row['test_ppl']:.1f} |")
    print(json.dumps({"vocab_size": len(corpus.vocab), "steps": args.steps,
                      "threads": args.threads, "num_samples": args.num_samples,
                      "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
