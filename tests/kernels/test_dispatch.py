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


@pytest.mark.parametrize("family", ["mingru", "minlstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_kernel_matches_the_reference(family, reverse):
    """The chunked parallel scan (kernel 'scan') gives the step-by-step outputs, final state
    and gradients, over several chunks, in both directions."""
    from rnnkit.cells import CellSpec
    from tests.util import random_inputs, random_params

    spec = CellSpec(family, 3, 5)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 100, 4)
    results = []
    for kernel in ("scan", "reference"):
        outputs, final = dispatch.run(spec, x, state0, params, reverse=reverse, kernel=kernel)
        loss = outputs.square().sum() + final[0].sum()
        results.append((outputs, final[0],
                        torch.autograd.grad(loss, [x, *state0, *params.values()])))
    (out_s, fin_s, grads_s), (out_r, fin_r, grads_r) = results
    torch.testing.assert_close(out_s, out_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fin_s, fin_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_s, grads_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_scan_kernel_refuses_what_is_not_a_scan():
    from rnnkit.cells import CellSpec
    from tests.util import random_inputs, random_params

    spec = CellSpec("lstm", 3, 5)
    x, state0 = random_inputs(spec, 4, 2)
    with pytest.raises(ValueError, match="kernel 'scan' runs minGRU and minLSTM only"):
        dispatch.run(spec, x, state0, random_params(spec), kernel="scan")
    spec = CellSpec("mingru", 3, 5)
    x, state0 = random_inputs(spec, 4, 2)
    with pytest.raises(ValueError, match="without lengths"):
        dispatch.run(spec, x, state0, random_params(spec), kernel="scan",
                     lengths=torch.tensor([4, 2]))
