"""A whole word-LM training step, rnnkit against plain torch.nn (``rnnkit bench lm``).

One step is what :class:`rnnkit.training.trainer.Trainer` does per chunk: embedding,
dropout, the recurrent layers, dropout, the output layer and its loss, backward,
gradient clipping by global norm, an SGD step. rnnkit's side is
:class:`rnnkit.models.WordLM` (its kernels, its output layer, ``rnnkit.clip_grad_norm``);
the yardstick is the same model written with ``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``
and ``F.cross_entropy`` (pytorch/examples' word_language_model), with
``torch.nn.utils.clip_grad_norm_`` and ``torch.optim.SGD``, starting from the same
weights. For ``--softmax sampled`` rnnkit trains with the sampled softmax against the
torch.nn model's full softmax (the speed-up the option buys); for ``adaptive`` both
sides use ``torch.nn.AdaptiveLogSoftmaxWithLoss``.

Configurations (Zaremba et al. 2014): ptb-small is 2 x 200 LSTM, T = 20, B = 20,
V = 10000, no dropout; ptb-medium 2 x 650, T = 35, B = 20, dropout 0.5. The tokens are
drawn from a Zipf distribution over V (so ids are frequency ranks, as the output layers
assume). Both steps run interleaved in one process, each repeat a batch of calls of
about 0.2 s, and the table gives the min and the median over the repeats, tokens/s and
the ratio rnnkit / torch.nn of tokens/s (> 1: rnnkit is faster).
"""
from __future__ import annotations

import json
import os
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.timing import interleaved_times

__all__ = ["LM_CONFIGS", "PlainLM", "lm_step_pair", "bench_lm", "run_lm"]

LM_CONFIGS = {
    "ptb-small": {"num_layers": 2, "hidden_size": 200, "bptt": 20, "batch_size": 20,
                  "vocab_size": 10000, "dropout": 0.0},
    "ptb-medium": {"num_layers": 2, "hidden_size": 650, "bptt": 35, "batch_size": 20,
                   "vocab_size": 10000, "dropout": 0.5},
}
LM_SOFTMAXES = ("full", "sampled", "adaptive")
CLIP, LR = 0.25, 1.0


class PlainLM(nn.Module):
    """The word LM in plain torch.nn: embedding -> dropout -> nn.LSTM -> dropout ->
    nn.Linear + cross-entropy, or nn.AdaptiveLogSoftmaxWithLoss."""

    def __init__(self, vocab_size, hidden_size, num_layers, dropout, adaptive_cutoffs=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(hidden_size, hidden_size, num_layers,
                           dropout=dropout if num_layers > 1 else 0.0)
        if adaptive_cutoffs is None:
            self.decoder = nn.Linear(hidden_size, vocab_size)
        else:
            self.decoder = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size,
                                                         adaptive_cutoffs)
        self.vocab_size = vocab_size

    def loss(self, inputs, targets):
        output, _ = self.rnn(self.drop(self.embedding(inputs)))
        features = self.drop(output)
        if isinstance(self.decoder, nn.Linear):
            logits = self.decoder(features)
            return F.cross_entropy(logits.view(-1, self.vocab_size), targets.view(-1))
        return self.decoder(features.view(-1, features.size(-1)), targets.view(-1)).loss


def _zipf_batches(vocab_size, bptt, batch_size, count, generator):
    probs = 1.0 / torch.arange(1, vocab_size + 1, dtype=torch.float64)
    tokens = torch.multinomial(probs, count * bptt * batch_size + 1, replacement=True,
                               generator=generator)
    return [(tokens[i * bptt * batch_size:(i + 1) * bptt * batch_size].view(bptt, batch_size),
             tokens[i * bptt * batch_size + 1:(i + 1) * bptt * batch_size + 1]
             .view(bptt, batch_size)) for i in range(count)], probs


def lm_step_pair(config, softmax, num_samples=0, seed=0):
    """``(rnnkit_step, torch_step)``: closures that each run one training step on the
    next of a few fixed batches and return the loss (a float)."""
    from rnnkit.clip import clip_grad_norm
    from rnnkit.models import WordLM
    from rnnkit.models.softmax import default_cutoffs

    c = config
    V, H = c["vocab_size"], c["hidden_size"]
    generator = torch.Generator().manual_seed(seed)
    batches, probs = _zipf_batches(V, c["bptt"], c["batch_size"], 4, generator)
    torch.manual_seed(seed)
    ours = WordLM(V, embed_size=H, hidden_size=H, num_layers=c["num_layers"],
                  dropout=c["dropout"], softmax=softmax, num_samples=num_samples,
                  token_counts=probs * 1e6)
    theirs = PlainLM(V, H, c["num_layers"], c["dropout"],
                     default_cutoffs(V) if softmax == "adaptive" else None)
    state = {k.replace("decoder.adaptive.", "decoder."): v
             for k, v in ours.state_dict().items() if "frequencies" not in k}
    theirs.load_state_dict(state)

    def make_step(model, loss_of, clip, optimizer):
        params = list(model.parameters())
        position = [0]

        def step():
            inputs, targets = batches[position[0] % len(batches)]
            position[0] += 1
            model.train()
            loss = loss_of(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip([p for p in params if p.grad is not None], CLIP)
            optimizer.step()
            return loss.item()
        return step

    def our_loss(inputs, targets):
        scores, _ = ours(inputs)
        return ours.loss(scores, targets)

    return (make_step(ours, our_loss, clip_grad_norm,
                      torch.optim.SGD(ours.parameters(), lr=LR)),
            make_step(theirs, theirs.loss, nn.utils.clip_grad_norm_,
                      torch.optim.SGD(theirs.parameters(), lr=LR)))


def _row(name, config, softmax, times, losses):
    tokens = config["bptt"] * config["batch_size"]
    row = {"config": name, "softmax": softmax, "tokens_per_step": tokens}
    for side in ("rnnkit", "torch"):
        row[side] = {"min_ms": round(min(times[side]) * 1e3, 3),
                     "median_ms": round(statistics.median(times[side]) * 1e3, 3),
                     "tokens_per_s": round(tokens / min(times[side]), 1),
                     "first_loss": round(losses[side], 6)}
    row["ratio_min"] = round(min(times["torch"]) / min(times["rnnkit"]), 3)
    row["ratio_median"] = round(statistics.median(times["torch"])
                                / statistics.median(times["rnnkit"]), 3)
    return row


def _format(row):
    a, b = row["rnnkit"], row["torch"]
    return (f"| {row['config']} | {row['softmax']} | {a['min_ms']:.1f} / {a['median_ms']:.1f}"
            f" | {b['min_ms']:.1f} / {b['median_ms']:.1f} | {a['tokens_per_s']:,.0f} | "
            f"{b['tokens_per_s']:,.0f} | {row['ratio_min']:.2f}x | {row['ratio_median']:.2f}x |")


TABLE_HEADER = ("| config | softmax | rnnkit ms (min / median) | torch.nn ms (min / median) "
                "| rnnkit tokens/s | torch.nn tokens/s | ratio (min) | ratio (median) |\n"
                "|---|---|---|---|---|---|---|---|")


def bench_lm(configs, softmaxes, repeats, num_samples=0, min_time=0.2, log=print):
    """Rows of the table, one per (configuration, softmax); ``configs`` maps a name to
    a dict like :data:`LM_CONFIGS`' entries."""
    rows = []
    for name, config in configs.items():
        for softmax in softmaxes:
            ours, theirs = lm_step_pair(config, softmax, num_samples)
            losses = {"rnnkit": ours(), "torch": theirs()}  # the first step, same weights
            times = interleaved_times({"rnnkit": ours, "torch": theirs}, repeats, min_time)
            rows.append(_row(name, config, softmax, times, losses))
            log(_format(rows[-1]))
    return rows


def add_lm_arguments(parser):
    g = parser.add_argument_group("rnnkit bench lm")
    g.add_argument("--lm-configs", default=",".join(LM_CONFIGS),
                   help=f"comma-separated subset of {', '.join(LM_CONFIGS)}")
    g.add_argument("--softmax", default=",".join(LM_SOFTMAXES),
                   help=f"comma-separated subset of {', '.join(LM_SOFTMAXES)}")
    g.add_argument("--num-samples", type=int, default=0,
                   help="sampled softmax negatives (default min(1024, V - 1))")


def run_lm(args):
    """``rnnkit bench lm``: print the table and a last-line JSON; 0 on success."""
    import sys

    names = [n for n in args.lm_configs.split(",") if n]
    softmaxes = [s for s in args.softmax.split(",") if s]
    for flag, values, known in (("--lm-configs", names, LM_CONFIGS),
                                ("--softmax", softmaxes, LM_SOFTMAXES)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            print(f"rnnkit bench: error: {flag} must be a comma-separated subset of "
                  f"{', '.join(known)}, got {','.join(values)!r}", file=sys.stderr)
            return 2
    repeats = args.repeats or (3 if args.quick else 7)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{load:.1f} on {os.cpu_count()} cores, min and median of {repeats} repeats")
    print("\nOne training step of the word LM (forward, loss, backward, clip, SGD): "
          "rnnkit WordLM vs the same model in plain torch.nn; ratio = torch.nn time / "
          "rnnkit time\n")
    print(TABLE_HEADER)
    rows = bench_lm({n: LM_CONFIGS[n] for n in names}, softmaxes, repeats, args.num_samples)
    result = {"bench": "lm", "threads": torch.get_num_threads(), "torch": torch.__version__,
              "load_average": round(load, 2), "repeats": repeats, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0
