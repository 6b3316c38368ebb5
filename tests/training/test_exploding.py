"""rnnkit.training.exploding: the run behind ``rnnkit plot clipping`` (issue 18)."""
import math

import pytest

from rnnkit.training.exploding import exploding_run


def test_clipping_keeps_an_exploding_rnn_finite():
    settings = dict(steps=100, length=50, hidden_size=32, init_scale=4.0, lr=0.05)
    plain, clipped = exploding_run(0.0, **settings), exploding_run(1.0, **settings)
    assert plain["loss"][0] == clipped["loss"][0]  # same weights, same first batch
    # without clipping: the loss runs away (non-finite, or at least 1e6 its start)
    assert not plain["finite"] or max(plain["loss"]) > 1e6 * plain["loss"][0]
    assert max(v for v in plain["grad_norm"] if v is not None) > 1e6
    assert clipped["finite"] and len(clipped["loss"]) == 100
    assert all(math.isfinite(v) for v in clipped["loss"])
    assert max(clipped["loss"]) < 10 * clipped["loss"][0]


def test_clip_must_be_a_finite_non_negative_number():
    with pytest.raises(ValueError, match="clip must be >= 0 and finite, got -1"):
        exploding_run(-1.0)
