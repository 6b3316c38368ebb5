"""Learning-rate schedules as a factor on the base rate, with plain-data state.

* ``constant``;
* ``step`` -- Zaremba et al.: full rate for ``decay_start`` epochs, then multiplied by
  ``decay`` every epoch;
* ``plateau`` -- pytorch/examples' word_language_model: multiply by ``decay`` whenever
  the validation loss fails to improve for more than ``patience`` epochs;
* ``cosine`` -- from 1 down to ``min_lr_ratio`` over all training steps;
* ``slanted`` -- ULMFiT's slanted triangular learning rate (Howard & Ruder 2018, eq. 3):
  a short linear rise over the first ``cut_frac`` of the T steps, then a long linear
  fall, from and back to 1 / ``stlr_ratio`` of the peak::

      cut = max(1, floor(T · cut_frac))
      p_t = t / cut                                  if t < cut
            1 - (t - cut) / (cut · (1/cut_frac - 1))  otherwise
      η_t = η_max · (1 + p_t · (ratio - 1)) / ratio

Any of them can start with a linear warm-up over ``warmup_steps``.
"""

from __future__ import annotations

import math

__all__ = ["LRSchedule", "slanted_triangular"]


def slanted_triangular(step, total_steps, cut_frac=0.1, ratio=32.0):
    """The factor η_t / η_max of the slanted triangular schedule (module docstring) at
    optimizer step ``step`` (0-based) of ``total_steps``; never below 1 / ``ratio``."""
    cut = max(1, math.floor(total_steps * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1.0 - (step - cut) / (cut * (1.0 / cut_frac - 1.0)))
    return (1.0 + p * (ratio - 1.0)) / ratio


class LRSchedule:
    """``factor(step, epoch)`` multiplies the base learning rate.

    Args:
        config: an ``OptimConfig``.
        total_steps: optimizer steps in the whole run (for cosine).
    """

    def __init__(self, config, total_steps):
        self.config = config
        self.total_steps = max(1, total_steps)
        self.scale = 1.0           # plateau: the product of the decays so far
        self.best = math.inf
        self.bad_epochs = 0

    def factor(self, step, epoch):
        """The factor for optimizer step ``step`` (0-based) in epoch ``epoch``
        (1-based)."""
        c = self.config
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
        if c.schedule == "step":
            return warm * c.decay ** max(epoch - c.decay_start, 0)
        if c.schedule == "plateau":
            return warm * self.scale
        if c.schedule == "cosine":
            progress = min(1.0, step / self.total_steps)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return warm * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * cosine)
        if c.schedule == "slanted":
            return warm * slanted_triangular(step, self.total_steps, c.cut_frac,
                                             c.stlr_ratio)
        return warm

    def end_epoch(self, valid_loss):
        """Tell the schedule the validation loss of the epoch just finished."""
        if valid_loss < self.best:
            self.best, self.bad_epochs = valid_loss, 0
        else:
            self.bad_epochs += 1
            if self.config.schedule == "plateau" and self.bad_epochs > self.config.patience:
                self.scale *= self.config.decay
                self.bad_epochs = 0

    def state_dict(self):
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.scale, self.best = float(state["scale"]), float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
