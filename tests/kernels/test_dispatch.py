"""dispatch.run: the RNNKIT_KERNEL switch and the kernel= argument."""
import pytest
import torch

from rnnkit.kernels import bptt, dispatch, reference
from tests.util import random_inputs, random_params, spec_cases


@pytest.mark.parametrize("name", ["reference", "bptt"])
def test_env_var_forces_kernel(monkeypatch, name):
    _, spec = spec_cases()[5]
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    called = []
    module = {"reference": reference, "bptt": bptt}[name]
    original = module.run
    monkeypatch.setattr(module, "run", lambda *a, **k: called.append(name) or original(*a, **k))
    monkeypatch.setenv("RNNKIT_KERNEL", name)
    assert dispatch.choose_kernel(x) == name
    dispatch.run(spec, x, state0, params)
    assert called == [name]


def test_unknown_kernel_names_the_value(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "cuda-magic")
    with pytest.raises(ValueError, match="RNNKIT_KERNEL must be one of .* got 'cuda-magic'"):
        dispatch.choose_kernel(torch.zeros(1))


def test_kernel_argument_beats_env_var(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    assert dispatch.choose_kernel(torch.zeros(1), kernel="reference") == "reference"
