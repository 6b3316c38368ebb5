"""Long-range memory tasks, generated on the fly: the adding problem and the copy task.

**Adding problem** (Hochreiter & Schmidhuber 1997, as in Le et al. 2015): T steps of two
inputs, a value drawn from U(0, 1) and a marker that is 1 at exactly two steps (one in
each half of the sequence) and 0 elsewhere; the target is the sum of the two marked
values. Predicting 1 always scores MSE 1/6 ≈ 0.167, so MSE < 0.01 means the model found
and remembered the marked values, one of them about T steps back.

**Copy task** (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): ten symbols from an
alphabet of 8, then T blanks, a delimiter, and ten more blanks during which the model must
output the ten symbols in order; everywhere else the target is the blank. Inputs and
targets are token ids: 0 blank, 1..8 symbols, 9 delimiter. Guessing scores accuracy
1/8 on the ten recalled symbols.

Every batch is drawn from a generator seeded by (seed, purpose, index), so training batch
k of a run is the same on every resume and every process, and the test set of a seed is
fixed: ``memory_batch(task, length, size, seed, "test", 0)``.
"""

from __future__ import annotations

import torch

__all__ = ["MEMORY_TASKS", "COPY_SYMBOLS", "COPY_CLASSES", "COPY_RECALL", "adding_batch",
           "copy_batch", "memory_batch", "input_size", "output_size"]

MEMORY_TASKS = ("adding", "copy")
COPY_SYMBOLS = 8        # ids 1..8
COPY_CLASSES = 10       # 0 blank, 1..8 symbols, 9 delimiter
COPY_RECALL = 10        # symbols to remember
_PURPOSES = {"train": 0, "valid": 1, "test": 2}


def _generator(seed, purpose, index):
    if purpose not in _PURPOSES:
        raise ValueError(f"memory_batch: purpose must be one of {', '.join(_PURPOSES)}, "
                         f"got {purpose!r}")
    return torch.Generator().manual_seed((seed * 3 + _PURPOSES[purpose]) * 1_000_003 + index)


def adding_batch(length, batch_size, generator):
    """``(inputs (T, N, 2), targets (N,))``: values and markers; the marked sum."""
    if length < 2:
        raise ValueError(f"adding_batch: length must be >= 2, got {length}")
    values = torch.rand(length, batch_size, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, length, (batch_size,), generator=generator)
    markers = torch.zeros(length, batch_size)
    columns = torch.arange(batch_size)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    targets = values[first, columns] + values[second, columns]
    return torch.stack([values, markers], dim=-1), targets


def copy_batch(length, batch_size, generator):
    """``(inputs (T + 20, N) ids, targets (T + 20, N) ids)`` of the copy task with T
    blanks between the symbols and the delimiter."""
    if length < 1:
        raise ValueError(f"copy_batch: length must be >= 1, got {length}")
    total = length + 2 * COPY_RECALL
    symbols = torch.randint(1, COPY_SYMBOLS + 1, (COPY_RECALL, batch_size),
                            generator=generator)
    inputs = torch.zeros(total, batch_size, dtype=torch.long)
    inputs[:COPY_RECALL] = symbols
    inputs[length + COPY_RECALL - 1] = COPY_CLASSES - 1  # the delimiter: recall now
    targets = torch.zeros(total, batch_size, dtype=torch.long)
    targets[-COPY_RECALL:] = symbols
    return inputs, targets


def memory_batch(task, length, batch_size, seed, purpose, index):
    """Batch ``index`` of ``purpose`` ('train', 'valid', 'test') for ``seed``."""
    generator = _generator(seed, purpose, index)
    if task == "adding":
        return adding_batch(length, batch_size, generator)
    if task == "copy":
        return copy_batch(length, batch_size, generator)
    raise ValueError(f"memory_batch: task must be one of {', '.join(MEMORY_TASKS)}, "
                     f"got {task!r}")


def input_size(task):
    """Features per step: 2 for adding (value, marker); copy inputs are ids."""
    return 2 if task == "adding" else COPY_CLASSES


def output_size(task):
    """1 (the sum) for adding, the 10 classes for copy."""
    return 1 if task == "adding" else COPY_CLASSES
