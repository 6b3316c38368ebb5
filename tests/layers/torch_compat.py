"""Shared pieces of the tests adapted from PyTorch's own (test_torch_modules.py,
test_torch_nn.py): torch.nn's class as the control and rnnkit's as the subject in one
parametrisation, the kernel switch, strict xfails for the known rnnkit failures of issue 14,
and a subprocess runner for inputs that used to crash the process.
"""
import importlib.util
import os
import subprocess
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

import rnnkit

NAMES = ("RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell")
LAYER_NAMES = NAMES[:3]
CELL_NAMES = NAMES[3:]
REPO_ROOT = Path(__file__).resolve().parents[2]

# The known rnnkit failures, by issue 14 item; every xfail below names one of these.
EMPTY_INPUT = "issue 14 item 1: SIGSEGV/wrong result on an empty batch or a zero-length sequence"
STALE_CACHE = "issue 14 item 2: stale packed-weight cache after a write through .data"
DOUBLE_BACKWARD = "issue 14 item 3: double backward (create_graph=True) silently wrong"
NON_BOOL_FLAGS = "issue 14 item 4: non-bool batch_first/bias not rejected with TypeError"
PICKLING = "issue 14 item 5: pickling fails (lambdas in the cell spec)"
DROPOUT_ONE = "issue 14 item 6: dropout=1 rejected (torch accepts [0, 1])"
ZERO_HIDDEN_CELL = "issue 14 item 6: cells reject hidden_size=0"
EXCEPTION_TYPES = "issue 14 item 7: exception type differs from torch's"
ALL_WEIGHTS = "issue 14 item 8: no all_weights / _flat_weights"
VMAP = "issue 14 item 8: gradients under torch.func.vmap (gradcheck's batched-grad check)"


def _stand_in_for_expecttest():
    """torch.testing._internal.common_utils imports ``expecttest`` (a PyTorch dev tool, not
    a dependency of torch) only for its TestCase base class; when it is not installed, a
    plain unittest.TestCase stands in so that module_db can be imported."""
    if "expecttest" not in sys.modules and importlib.util.find_spec("expecttest") is None:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase
        sys.modules["expecttest"] = stand_in


_stand_in_for_expecttest()


@pytest.fixture(params=("torch", "rnnkit"))
def impl(request):
    """Whose class runs: torch.nn's (the control, must pass) or rnnkit's (the subject)."""
    return request.param


@pytest.fixture(params=("default", "bptt"))
def kernel(request, monkeypatch):
    """rnnkit's kernel: the default choice, or RNNKIT_KERNEL=bptt."""
    if request.param == "bptt":
        monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    else:
        monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    return request.param


def module_class(impl, name):
    """torch.nn.<name> or rnnkit.<name>."""
    return getattr(torch.nn if impl == "torch" else rnnkit, name)


def known_failure(request, reason, when=True):
    """Mark the running test xfail(strict=True) when it runs rnnkit's class and ``when``
    holds; the control (torch.nn) is never marked."""
    if when and request.getfixturevalue("impl") == "rnnkit":
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def make_pair(impl, name, *args, dtype=None, **kwargs):
    """(reference, subject): torch.nn.<name>(*args, **kwargs) and the subject class built
    with the same arguments, the reference's state_dict loaded into the subject."""
    reference = getattr(torch.nn, name)(*args, **kwargs)
    subject = module_class(impl, name)(*args, **kwargs)
    if dtype is not None:
        reference.to(dtype)
        subject.to(dtype)
    # load_state_dict swaps tensors when torch.__future__'s swapping is on, and torch.nn's
    # RNN weights (weakly referenced by _flat_weight_refs) refuse to be swapped
    swapping = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(False)
    try:
        subject.load_state_dict(reference.state_dict())
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swapping)
    return reference, subject


def tensors_of(obj):
    """Every tensor in a nested output (tuples, lists, PackedSequence data), in order."""
    if isinstance(obj, PackedSequence):
        return [obj.data]
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in tensors_of(item)]
    if obj is None:
        return []
    raise TypeError(f"unexpected output type {type(obj).__name__}")


def assert_same(actual, expected, **tolerance):
    """Same structure and values (assert_close per tensor; dtype-based tolerances)."""
    actual_tensors, expected_tensors = tensors_of(actual), tensors_of(expected)
    assert len(actual_tensors) == len(expected_tensors)
    for got, want in zip(actual_tensors, expected_tensors):
        torch.testing.assert_close(got, want, **tolerance)


def grads_of(tensors):
    return [None if t.grad is None else t.grad.clone() for t in tensors]


def run_isolated(code, timeout=300):
    """Run ``code`` in a fresh interpreter (RNNKIT_KERNEL inherited), so that a crash of the
    kernel (SIGSEGV) fails one test instead of killing the suite."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


def assert_clean_exit(result):
    """The subprocess ended normally (a negative returncode is a signal: -11 is SIGSEGV)."""
    assert result.returncode == 0, (f"returncode {result.returncode}\nstdout:\n{result.stdout}"
                                    f"\nstderr:\n{result.stderr[-3000:]}")
