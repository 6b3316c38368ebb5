"""The trainer: truncated BPTT over a token stream, checkpoints, exact resume.

Besides plain truncated BPTT it runs the training side of the AWD-LSTM recipe (Merity,
Keskar & Socher 2017), each an option of the config:

- **AR / TAR** (``train.ar_alpha``, ``train.tar_beta``): the model's
  ``activation_terms()`` are added to the loss as ``alpha * AR + beta * TAR``; they are
  logged in their own columns (``ar``, ``tar``), so ``loss`` and ``ppl`` stay the pure
  cross-entropy;
- **variable-length BPTT** (``train.variable_bptt``): each chunk's length is drawn,
  ``l ~ N(bptt, 5)`` with probability 0.95 else ``N(bptt / 2, 5)``, at least
  ``train.min_bptt``, and the step's learning rate is scaled by ``l / bptt``. The
  lengths of epoch ``e`` come from a generator seeded by ``(train.seed, e)``, so the
  position (epoch, chunk) a checkpoint stores fixes the rest of the epoch exactly;
- **NT-ASGD** (``optim.optimizer = "ntasgd"``): SGD until the validation loss at an
  epoch end is worse than the best before the last ``optim.nonmono`` epoch ends, then
  SGD plus a running average of the weights from that step on
  (``torch.optim.swa_utils.AveragedModel``: with ``t0 = 0, lambda = 0`` ASGD's iterate
  is plain SGD's and its ``ax`` this average). Validation, the best checkpoint and test
  use the averaged weights: a checkpoint's ``model.*`` tensors are then the average
  (what ``rnnkit eval`` / ``sample`` load) and ``raw.*`` the SGD iterate to resume from.

The trainer knows nothing about the model beyond this contract: a ``torch.nn.Module``
(parameters, ``state_dict``) with ``model(inputs, state) -> (logits, state)``, ``inputs``
of shape ``(T, B)`` and ``state=None`` meaning zeros, and ``model.loss(logits, targets)
-> mean nats per token``. What a model is called, how it is rebuilt and how its run is
reported (samples, ``curves.png``) belong to the command that trains it
(:mod:`rnnkit.cli_run`).
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from rnnkit.data.text import batchify, get_batch, num_batches
from rnnkit.training.checkpoint import (CheckpointError, CheckpointManager,
                                        flatten_optimizer_state, join_shared,
                                        load_checkpoint, split_shared,
                                        unflatten_optimizer_state)
from rnnkit.training.config import ConfigError, to_dict
from rnnkit.training.distributed import World, shard_columns
from rnnkit.training.metrics import MetricsLog, lm_metrics
from rnnkit.training.rundir import write_text_atomic
from rnnkit.training.schedule import LRSchedule

from rnnkit.clip import clip_grad_norm

__all__ = ["Trainer", "NonFiniteLoss", "detach_state", "build_optimizer", "evaluate_totals",
           "variable_bptt_plan"]


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss or gradient; no checkpoint was written for it."""


def detach_state(state):
    """Cut the graph behind a recurrent state (a tensor or a nested tuple of them), so
    the next chunk backpropagates only through its own ``T`` steps."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def build_optimizer(parameters, config):
    """SGD / Adam / AdamW from an ``OptimConfig`` (``"ntasgd"`` is SGD: the trainer
    does the averaging)."""
    parameters = list(parameters)
    if config.optimizer in ("sgd", "ntasgd"):
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(parameters, lr=config.lr, betas=(config.beta1, config.beta2),
               weight_decay=config.weight_decay)


@torch.no_grad()
def evaluate_totals(model, source, bptt):
    """Summed loss (nats) and token count over a batchified ``(L, B)`` source, the
    state carried from chunk to chunk as in training; a float64 tensor ``[sum, n]``."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    hidden = None
    if source.size(1) > 0:
        for index in range(num_batches(source, bptt)):
            inputs, targets = get_batch(source, index, bptt)
            logits, hidden = model(inputs, hidden)
            total[0] += model.loss(logits, targets).item() * targets.numel()
            total[1] += targets.numel()
    model.train(was_training)
    return total


def _flat_state(state):
    if state is None:
        return "none", []
    if isinstance(state, torch.Tensor):
        return "tensor", [state]
    return "tuple", list(state)


class Trainer:
    """Train a language model with truncated BPTT.

    Args:
        model: see the module docstring.
        corpus: a ``rnnkit.data.datasets.Corpus`` (token streams + vocabulary).
        config: a ``rnnkit.training.config.Config``.
        out_dir: where checkpoints and logs go; ``None`` writes nothing.
        world: a ``World`` (default: from the torchrun environment).
        model_meta: JSON data stored in every checkpoint to rebuild the model
            (``{"kind": "char_lm", ...}``); a resume checks the kind matches.
    """

    def __init__(self, model, corpus, config, out_dir=None, world=None, model_meta=None):
        self.config, self.model, self.vocab = config, model, corpus.vocab
        self.world = world or World.from_env()
        self.model_meta = model_meta or {"kind": type(model).__name__}
        t = config.train
        if t.batch_size % self.world.world_size:
            raise ConfigError(f"config key train.batch_size: {t.batch_size} must be "
                              f"divisible by the {self.world.world_size} processes")
        self._setup_data(corpus)
        self.network = self._wrap_network(model)
        self.optimizer = build_optimizer(model.parameters(), config.optim)
        self.schedule = LRSchedule(config.optim, t.epochs * self.steps_per_epoch)
        self.out_dir = Path(out_dir) if out_dir else None
        self.checkpoints = (CheckpointManager(self.out_dir / "checkpoints",
                                              t.keep_checkpoints) if self.out_dir else None)
        # progress: the next chunk to train is `batch_index` of `epoch` (1-based)
        self.epoch, self.batch_index, self.step_count = 1, 0, 0
        self.hidden, self.best_valid, self.elapsed_before = None, math.inf, 0.0
        self.interval = [0.0, 0, 0.0]  # loss * tokens, tokens, wall seconds
        self.last_grad_norm, self.stop_reason, self._signal = None, None, None
        self._validate_at_stop = False
        # AWD-LSTM: variable-length chunks of this epoch, the penalties' interval sums
        # (alpha AR * tokens, beta TAR * tokens), NT-ASGD's epoch-end validation losses,
        # the averaged model and the step averaging started at
        self._plan, self._plan_epoch, self._lr_scale = None, None, 1.0
        self.penalty_interval = [0.0, 0.0]
        self.valid_history, self.averaged, self.average_start = [], None, None
        self.log, self.bar = None, None

    def _setup_data(self, corpus):
        """This rank's batchified train stream and eval shards; steps per epoch."""
        t = self.config.train
        self.train_data = shard_columns(batchify(corpus.train, t.batch_size),
                                        self.world.rank, self.world.world_size)
        self.valid_data = self._eval_shard(corpus.valid)
        self.test_data = self._eval_shard(corpus.test)
        self.steps_per_epoch = num_batches(self.train_data, t.bptt)

    def _wrap_network(self, model):
        """What the forward pass goes through: the model, or DDP around it."""
        if self.world.distributed:
            return torch.nn.parallel.DistributedDataParallel(model)
        return model

    def _eval_shard(self, stream):
        source = batchify(stream, self.config.train.eval_batch_size)
        return torch.tensor_split(source, self.world.world_size, dim=1)[self.world.rank]

    # ---------------------------------------------------------------- training loop
    def fit(self):
        """Train until the configured epochs are done or a stop is requested; returns
        a summary dict (``"completed"``, ``"stop_reason"``, best valid, test)."""
        t = self.config.train
        self.run_start = self._last_checkpoint = time.monotonic()
        self.run_start_cpu = time.process_time()
        previous = self._install_signal_handlers()
        if self.world.is_main and self.out_dir:
            self.log = MetricsLog(self.out_dir, t.tensorboard, resume_step=self.step_count)
        try:
            while self.epoch <= t.epochs and self.stop_reason is None:
                if self.train_epoch():
                    self._end_epoch()
            summary = self._finish()
        finally:
            self._restore_signal_handlers(previous)
            if self.log:
                self.log.close()
        return summary

    def train_epoch(self):
        """Train from the current position to the end of the epoch; returns False if
        it stopped early (signal or time limit) after writing a checkpoint."""
        t = self.config.train
        self.plan_epoch()
        self.bar = self._progress_bar()
        while self.batch_index < self.steps_per_epoch:
            batch, count = self.next_batch()
            tick = time.monotonic()
            loss = self.step(*batch)
            self.batch_index += 1
            self.step_count += 1
            self.interval[0] += loss * count
            self.interval[1] += count
            self.interval[2] += time.monotonic() - tick
            if self.bar is not None:
                self.bar.update(1)
            if self.step_count % t.log_every == 0:
                self._log_train()
            if self._should_stop():
                self._close_bar()
                if self._validate_at_stop:
                    self._validate_mid_epoch()  # a time-limited run ends with a figure
                else:
                    self.save()
                return False
            if self.batch_index < self.steps_per_epoch and self._checkpoint_due():
                self.save()
        self._close_bar()
        return True

    def _checkpoint_due(self):
        """True every ``train.checkpoint_every`` steps and when ``train.checkpoint_minutes``
        have passed since the last checkpoint (or the start), whichever comes first; every
        rank agrees (a clock on any rank is enough)."""
        t = self.config.train
        by_steps = bool(t.checkpoint_every) and self.step_count % t.checkpoint_every == 0
        by_time = (t.checkpoint_minutes > 0 and
                   time.monotonic() - self._last_checkpoint >= t.checkpoint_minutes * 60)
        if self.world.distributed and not by_steps:
            return self.world.any(by_time)
        return by_steps or by_time

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def next_batch(self):
        """The training batch at the current position, as the arguments of ``step``,
        and the number of predictions in it (tokens)."""
        bptt = self.config.train.bptt
        if self._plan is None:
            inputs, targets = get_batch(self.train_data, self.batch_index, bptt)
        else:
            start, length = self._plan[self.batch_index]
            inputs = self.train_data[start:start + length]
            targets = self.train_data[start + 1:start + 1 + length]
            self._lr_scale = length / bptt  # Merity et al.: lr * seq_len / bptt
        return (inputs, targets), targets.numel()

    def plan_epoch(self):
        """With ``train.variable_bptt``: this epoch's chunks ``(start, length)`` and
        ``steps_per_epoch``, drawn from a generator seeded by the run's seed and the
        epoch (the same on every process and after a resume)."""
        t = self.config.train
        if not t.variable_bptt or self._plan_epoch == self.epoch:
            return
        self._plan = variable_bptt_plan(self.train_data.size(0), t.bptt, t.min_bptt,
                                        f"rnnkit-bptt:{t.seed}:{self.epoch}")
        self._plan_epoch, self.steps_per_epoch = self.epoch, len(self._plan)

    def split_metrics(self, split):
        """Metrics of the ``"valid"`` or ``"test"`` split (always with ``"loss"``)."""
        data = self.valid_data if split == "valid" else self.test_data
        return lm_metrics(self.evaluate(data), self.vocab.level)

    def train_metrics(self, loss):
        """Metrics shown for a training interval of mean loss ``loss``."""
        return lm_metrics(loss, self.vocab.level)

    @staticmethod
    def selection_score(metrics):
        """Lower is better: the number that picks the best checkpoint."""
        return metrics["loss"]

    def step(self, inputs, targets):
        """One optimizer step on one chunk; returns the chunk's mean loss (nats/token,
        averaged over all processes)."""
        loss = self.compute_gradients(inputs, targets)
        self.apply_gradients()
        return loss

    def compute_gradients(self, inputs, targets):
        """Forward and backward on one chunk (gradients averaged over processes by
        DDP); carries the detached state forward; returns the mean loss."""
        self.network.train()
        logits, hidden = self.network(inputs, detach_state(self.hidden))
        loss = self.model.loss(logits, targets)
        value = self._mean_over_world(loss.item())
        if not math.isfinite(value):
            raise NonFiniteLoss(self._non_finite_message(f"loss is {value}"))
        # Zaremba et al. sum the loss over the T steps (mean over the batch); with the
        # same lr and clip this is a T times larger gradient than the per-token mean.
        scale = inputs.size(0) if self.config.train.loss_reduction == "sum_over_time" else 1
        total = loss * scale + self._activation_penalty(targets.numel())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.hidden = detach_state(hidden)
        return value

    def _activation_penalty(self, tokens):
        """``alpha * AR + beta * TAR`` of the last forward (0 when both are off); their
        values go to ``penalty_interval`` for the log."""
        t = self.config.train
        if t.ar_alpha == 0 and t.tar_beta == 0:
            return 0.0
        ar, tar = self.model.activation_terms()
        ar, tar = t.ar_alpha * ar, t.tar_beta * tar
        self.penalty_interval[0] += self._mean_over_world(ar.item()) * tokens
        self.penalty_interval[1] += self._mean_over_world(tar.item()) * tokens
        return ar + tar

    def apply_gradients(self):
        """Clip by global norm, set the scheduled learning rate, take the step."""
        c = self.config.optim
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        threshold = c.clip if c.clip > 0 else math.inf
        self.last_grad_norm = float(clip_grad_norm(parameters, threshold))
        if not math.isfinite(self.last_grad_norm):
            raise NonFiniteLoss(self._non_finite_message(
                f"gradient norm is {self.last_grad_norm}"))
        for group in self.optimizer.param_groups:  # lr_scale: discriminative rates
            group["lr"] = self.current_lr() * group.get("lr_scale", 1.0) * self._lr_scale
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)

    def current_lr(self):
        return self.config.optim.lr * self.schedule.factor(self.step_count, self.epoch)

    def evaluate(self, source):
        """Mean loss (nats/token) over a batchified split, summed over processes."""
        model = self.averaged.module if self.averaged is not None else self.model
        total = evaluate_totals(model, source, self.config.train.bptt)
        self.world.all_reduce_sum(total)
        return float(total[0] / total[1])

    def _validate(self, where, end_of_epoch):
        """Score the validation split, log and print it, note whether it is the best so
        far; at an epoch end the schedule sees the loss. Returns ``is_best``."""
        metrics = self.split_metrics("valid")
        if end_of_epoch:
            self.schedule.end_epoch(metrics["loss"])
            self._nt_asgd_check(metrics["loss"])
        score = self.selection_score(metrics)
        is_best = score < self.best_valid
        self.best_valid = min(self.best_valid, score)
        if self.log:
            self.log.log(step=self.step_count, epoch=self.epoch, split="valid",
                         lr=self.current_lr(), elapsed_s=self.elapsed(), **metrics)
        self._say(f"epoch {self.epoch:3d}{where} | valid " + _fmt_metrics(metrics) +
                  f" | lr {self.current_lr():.4g} | {self.elapsed():.0f} s" +
                  (" | best" if is_best else ""))
        return is_best

    def _nt_asgd_check(self, loss):
        """NT-ASGD's trigger (Merity et al.): start averaging once an epoch-end
        validation loss exceeds the best of those before the last ``optim.nonmono``."""
        nonmono, history = self.config.optim.nonmono, self.valid_history
        if (self.config.optim.optimizer == "ntasgd" and self.averaged is None
                and len(history) > nonmono and loss > min(history[:-nonmono])):
            self.averaged, self.average_start = AveragedModel(self.model), self.step_count
            self._say(f"epoch {self.epoch:3d} | NT-ASGD: averaging the weights from step "
                      f"{self.step_count + 1} on (valid loss {loss:.4f} > "
                      f"{min(history[:-nonmono]):.4f})")
        history.append(loss)

    def _validate_mid_epoch(self):
        """At a time-limit stop inside an epoch: validate, log it, keep the checkpoint
        as best if it is. Training state is untouched (the learning-rate schedule only
        moves at epoch ends), so ``--resume`` continues exactly."""
        where = f" | step {self.batch_index}/{self.steps_per_epoch} (time limit)"
        self.save(is_best=self._validate(where, end_of_epoch=False))

    def _end_epoch(self):
        is_best = self._validate("", end_of_epoch=True)
        self.epoch, self.batch_index, self.hidden = self.epoch + 1, 0, None
        self.save(is_best=is_best)

    def _finish(self):
        summary = {"completed": self.stop_reason is None, "stop_reason": self.stop_reason,
                   "steps": self.step_count, "epochs_done": self.epoch - 1,
                   "elapsed_s": self.elapsed(), "best_valid": self.best_valid}
        if self.stop_reason is None:
            best = self.checkpoints.best() if self.checkpoints else None
            if best is not None:
                self.load_weights(best)  # its model.* are the averaged weights if any
                self.averaged = None
            summary["test"] = self.split_metrics("test")
            summary["valid"] = self.split_metrics("valid")
            if self.log:
                self.log.log(step=self.step_count, epoch=self.epoch - 1, split="test",
                             elapsed_s=self.elapsed(), **summary["test"])
            self._say("test " + _fmt_metrics(summary["test"]))
        if self.world.is_main and self.out_dir:
            write_text_atomic(self.out_dir / "results.json",
                              json.dumps(summary, indent=1) + "\n")
        return summary

    # ---------------------------------------------------------------- stopping
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous):
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame):
        if self._signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._signal = signal.Signals(signum).name
        self._say(f"\n{self._signal}: finishing this step, then writing a checkpoint "
                  f"(press Ctrl-C again to abort without one)", always=True)

    def _should_stop(self):
        limit = self.config.train.max_minutes * 60
        if self.config.train.budget_clock == "cpu":  # CPU seconds of this process
            spent = time.process_time() - self.run_start_cpu
        else:
            spent = time.monotonic() - self.run_start
        timed_out = limit > 0 and spent >= limit
        if self.world.any(self._signal is not None or timed_out):
            self.stop_reason = self._signal or "time limit"
            if self._signal is None:
                self.stop_reason = "time limit" if timed_out else "stopped by another rank"
            # every rank must agree on whether to validate (a collective): only when
            # no rank was signalled, i.e. the stop is a time limit somewhere
            self._validate_at_stop = not self.world.any(self._signal is not None)
        return self.stop_reason is not None

    def close(self, sync=True):
        """Leave the data-parallel job: drop the DDP wrapper (it holds the process group)
        and close the world (see ``World.close``; ``sync=False`` after an error). The
        model stays usable on this process."""
        self.network = self.model
        self.world.close(sync=sync)

    def elapsed(self):
        return self.elapsed_before + time.monotonic() - self.run_start

    def _non_finite_message(self, what):
        latest = self.checkpoints.latest() if self.checkpoints else None
        keep = (f"the last good checkpoint is {str(latest)!r}" if latest
                else "no checkpoint was written yet")
        return (f"training stopped: {what} at step {self.step_count + 1} (epoch "
                f"{self.epoch}); {keep}. Try a lower optim.lr or optim.clip.")

    def _mean_over_world(self, value):
        if not self.world.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        return float(self.world.all_reduce_sum(t)[0] / self.world.world_size)

    # ---------------------------------------------------------------- checkpoints
    def save(self, is_best=False):
        """Write a checkpoint of everything needed to continue exactly (rank 0 writes;
        every rank contributes its RNG and recurrent state)."""
        kind, hidden = _flat_state(self.hidden)
        ranks_rng = self.world.gather(torch.get_rng_state())
        ranks_hidden = [self.world.gather(h.contiguous()) for h in hidden]
        if self.world.is_main and self.checkpoints is not None:
            weights = self.averaged.module if self.averaged is not None else self.model
            model_tensors, aliases = split_shared(weights.state_dict())
            optim_tensors, optim_plain = flatten_optimizer_state(self.optimizer.state_dict())
            tensors = {f"model.{k}": v for k, v in model_tensors.items()}
            if self.averaged is not None:  # the SGD iterate training continues from
                raw, _ = split_shared(self.model.state_dict())
                tensors.update({f"raw.{k}": v for k, v in raw.items()})
            tensors.update({f"optim.{k}": v for k, v in optim_tensors.items()})
            for rank in range(self.world.world_size):
                tensors[f"rng.torch.r{rank}"] = ranks_rng[rank]
                for i, parts in enumerate(ranks_hidden):
                    tensors[f"hidden.r{rank}.{i}"] = parts[rank]
            self.checkpoints.save(self.step_count, tensors, {
                "model": self.model_meta, "config": to_dict(self.config),
                "vocab": self.vocab.to_json(), "aliases": aliases,
                "optimizer": optim_plain, "schedule": self.schedule.state_dict(),
                "python_random": _jsonable(random.getstate()),
                "hidden": {"kind": kind, "count": len(hidden)},
                "world_size": self.world.world_size,
                "progress": {"epoch": self.epoch, "batch_index": self.batch_index,
                             "step": self.step_count, "best_valid": self.best_valid,
                             "elapsed_s": self.elapsed(), "interval": self.interval[:2],
                             "penalty_interval": self.penalty_interval,
                             "position": self._position()},
                "averaging": {"valid_history": self.valid_history,
                              "start_step": self.average_start,
                              "count": (int(self.averaged.n_averaged)
                                        if self.averaged is not None else 0)},
            }, is_best=is_best)
        self.world.barrier()
        self._last_checkpoint = time.monotonic()

    def load_weights(self, path):
        """Load only the model weights of a checkpoint."""
        tensors, meta = load_checkpoint(path)
        self._check_kind(path, meta)
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.model.load_state_dict(join_shared(weights, meta["aliases"]))
        except RuntimeError as e:  # a 29-line size mismatch: name the checkpoint instead
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this run's model "
                                  f"(another model.* setting?): {lines[min(1, len(lines) - 1)]}"
                                  ) from None
        return tensors, meta

    def resume(self, path):
        """Restore model, optimizer, schedule, RNGs, data position and carried state."""
        tensors, meta = self.load_weights(path)
        if meta["world_size"] != self.world.world_size:
            raise CheckpointError(f"checkpoint {str(path)!r} was written by "
                                  f"{meta['world_size']} processes, this run has "
                                  f"{self.world.world_size}")
        optim = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
        self.optimizer.load_state_dict(unflatten_optimizer_state(optim, meta["optimizer"]))
        self.schedule.load_state_dict(meta["schedule"])
        p = meta["progress"]
        self.epoch, self.batch_index, self.step_count = p["epoch"], p["batch_index"], p["step"]
        self.best_valid, self.elapsed_before = float(p["best_valid"]), float(p["elapsed_s"])
        self.interval = [float(p["interval"][0]), int(p["interval"][1]), 0.0]
        r = self.world.rank
        torch.set_rng_state(tensors[f"rng.torch.r{r}"])
        version, internal, gauss = meta["python_random"]
        random.setstate((version, tuple(internal), gauss))
        hidden = [tensors[f"hidden.r{r}.{i}"] for i in range(meta["hidden"]["count"])]
        kind = meta["hidden"]["kind"]
        self.hidden = None if kind == "none" else hidden[0] if kind == "tensor" else tuple(hidden)
        self.penalty_interval = [float(v) for v in p.get("penalty_interval", [0.0, 0.0])]
        self._resume_averaging(path, tensors, meta)
        self.plan_epoch()
        if p.get("position") is not None and p["position"] != self._position():
            raise CheckpointError(f"checkpoint {str(path)!r} stopped at token {p['position']} "
                                  f"of the training stream, this run's chunks put it at "
                                  f"{self._position()} (another train.bptt, seed or "
                                  f"variable_bptt?)")

    def _resume_averaging(self, path, tensors, meta):
        """NT-ASGD after a resume: the validation history, and once averaging has
        started the average (the checkpoint's ``model.*``, loaded) and the SGD iterate
        (``raw.*``) back in the model."""
        averaging = meta.get("averaging", {})
        self.valid_history = [float(v) for v in averaging.get("valid_history", [])]
        if averaging.get("start_step") is None:
            return
        self.averaged = AveragedModel(self.model)
        self.averaged.n_averaged.fill_(int(averaging["count"]))
        self.average_start = int(averaging["start_step"])
        raw = {k[len("raw."):]: v for k, v in tensors.items() if k.startswith("raw.")}
        if not raw:
            raise CheckpointError(f"checkpoint {str(path)!r} has averaged weights but no "
                                  f"raw.* tensors to continue training from")
        self.model.load_state_dict(join_shared(raw, meta["aliases"]))

    def _position(self):
        """The token offset of the next chunk in the training stream (variable BPTT),
        else None."""
        if self._plan is None:
            return None
        if self.batch_index >= len(self._plan):
            return int(self.train_data.size(0)) - 1
        return self._plan[self.batch_index][0]

    def _check_kind(self, path, meta):
        want, got = self.model_meta.get("kind"), meta.get("model", {}).get("kind")
        if want != got:
            raise CheckpointError(f"checkpoint {str(path)!r} holds a {got!r} model, "
                                  f"this run trains a {want!r}")

    # ---------------------------------------------------------------- reporting
    def _progress_bar(self):
        mode = self.config.train.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self._log_lines = mode == "log" and self.world.is_main
        if mode != "bar" or not self.world.is_main:
            return None
        return tqdm(total=self.steps_per_epoch, initial=self.batch_index,
                    desc=f"epoch {self.epoch}", dynamic_ncols=True, leave=False)

    def _log_train(self):
        loss_tokens, tokens, seconds = self.interval
        if tokens == 0:
            return
        loss = loss_tokens / tokens
        speed = tokens * self.world.world_size / seconds if seconds > 0 else None
        metrics = self.train_metrics(loss)
        t = self.config.train
        penalties = {}
        if t.ar_alpha or t.tar_beta:
            penalties = {"ar": self.penalty_interval[0] / tokens,
                         "tar": self.penalty_interval[1] / tokens}
        if self.log:
            self.log.log(step=self.step_count, epoch=self.epoch, split="train",
                         lr=self.current_lr(), tokens_per_s=speed,
                         elapsed_s=self.elapsed(), **metrics, **penalties)
        if self.bar is not None:
            shown = {k: f"{v:.3f}" if k == "loss" else f"{v:.4g}" for k, v in metrics.items()}
            self.bar.set_postfix(**shown, tok_s=f"{speed or 0:,.0f}")
        elif getattr(self, "_log_lines", False):
            self._say(f"epoch {self.epoch:3d} | step {self.batch_index:6d}/"
                      f"{self.steps_per_epoch} | train " + _fmt_metrics(metrics) +
                      f" | lr {self.current_lr():.4g} | {speed or 0:,.0f} tok/s" +
                      "".join(f" | {k} {v:.4f}" for k, v in penalties.items()))
        self.interval = [0.0, 0, 0.0]
        self.penalty_interval = [0.0, 0.0]

    def _say(self, text, always=False):
        if self.world.is_main and (always or self.config.train.progress != "off"):
            (tqdm.write if self.bar is not None else print)(text, file=sys.stderr)


def variable_bptt_plan(length, bptt, min_bptt, seed):
    """Chunks ``[(start, length), ...]`` covering a stream of ``length`` rows (Merity et
    al.): each length ~ ``N(bptt, 5)`` with probability 0.95, else ``N(bptt / 2, 5)``,
    truncated to an integer, at least ``min_bptt``; the last chunk ends at the stream's
    end. ``seed`` (anything ``random.Random`` takes) fixes the draws."""
    rng = random.Random(seed)
    plan, start = [], 0
    while start < length - 1:
        mean = bptt if rng.random() < 0.95 else bptt / 2
        size = min(max(min_bptt, int(rng.gauss(mean, 5))), length - 1 - start)
        plan.append((start, size))
        start += size
    return plan


def _fmt_metrics(m):
    return " ".join(f"{k} {v:.4f}" if k in ("loss", "bpc") else f"{k} {v:.2f}"
                    for k, v in m.items())


def _jsonable(obj):
    if isinstance(obj, tuple):
        return [_jsonable(x) for x in obj]
    return obj
