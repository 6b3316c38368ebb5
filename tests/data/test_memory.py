"""rnnkit.data.memory: the adding problem and the copy task (issue 18)."""
import pytest
import torch

from rnnkit.data.memory import COPY_RECALL, memory_batch


def test_adding_problem_has_two_markers_one_per_half_and_their_sum():
    inputs, targets = memory_batch("adding", 10, 64, seed=3, purpose="train", index=0)
    assert inputs.shape == (10, 64, 2) and targets.shape == (64,)
    values, markers = inputs[..., 0], inputs[..., 1]
    assert torch.equal(markers.sum(0), torch.full((64,), 2.0))
    assert torch.equal(markers[:5].sum(0), torch.ones(64))
    torch.testing.assert_close((values * markers).sum(0), targets)
    assert 0 <= float(values.min()) and float(values.max()) < 1


def test_copy_task_layout():
    inputs, targets = memory_batch("copy", 5, 8, seed=0, purpose="test", index=0)
    assert inputs.shape == targets.shape == (5 + 2 * COPY_RECALL, 8)
    symbols = inputs[:COPY_RECALL]
    assert 1 <= int(symbols.min()) and int(symbols.max()) <= 8
    assert torch.equal(targets[-COPY_RECALL:], symbols)          # recalled in order
    assert (targets[:-COPY_RECALL] == 0).all()                    # blanks before
    assert (inputs[COPY_RECALL + 5 - 1] == 9).all()               # the delimiter
    assert (inputs[COPY_RECALL:COPY_RECALL + 4] == 0).all() and (inputs[-COPY_RECALL:] == 0).all()


def test_batches_are_fixed_by_seed_purpose_and_index():
    a = memory_batch("adding", 20, 4, 1, "test", 0)
    assert all(torch.equal(x, y) for x, y in zip(a, memory_batch("adding", 20, 4, 1, "test", 0)))
    for other in (memory_batch("adding", 20, 4, 2, "test", 0),
                  memory_batch("adding", 20, 4, 1, "valid", 0),
                  memory_batch("adding", 20, 4, 1, "test", 1)):
        assert not torch.equal(a[1], other[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of adding, copy, got 'sort'"):
        memory_batch("sort", 5, 1, 0, "train", 0)
    with pytest.raises(ValueError, match="length must be >= 2, got 1"):
        memory_batch("adding", 1, 1, 0, "train", 0)
