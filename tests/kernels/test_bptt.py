"""The hand-derived BPTT kernel against the autograd reference: every cell family and
option, every sequence option; and torch.autograd.gradcheck on the bptt kernel."""
import pytest
import torch

from rnnkit.kernels import bptt, reference
from tests.util import random_inputs, random_params, spec_cases

CASES = spec_cases()
SEQ_OPTIONS = {
    "plain": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": [6, 3, 1, 5]},
    "lengths-reverse": {"lengths": [6, 3, 1, 5], "reverse": True},
    "h-mask": {"h_mask": True},
    "zoneout-train": {"zoneout": "train"},
    "zoneout-eval": {"zoneout": "eval"},
    "everything": {"lengths": [2, 6, 4, 1], "reverse": True, "h_mask": True,
                   "zoneout": "train"},
}


def kernel_options(spec, options, seq_len, batch, seed=5):
    """Turn a SEQ_OPTIONS entry into run() keyword arguments with concrete tensors."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = {"reverse": options.get("reverse", False)}
    if "lengths" in options:
        kwargs["lengths"] = torch.tensor(options["lengths"][:batch])
    if options.get("h_mask"):
        keep = torch.rand(batch, spec.output_size, generator=gen) > 0.25
        kwargs["h_mask"] = keep.double() / 0.75
    if options.get("zoneout") == "train":
        kwargs["zoneout"] = tuple((torch.rand(seq_len, batch, size, generator=gen) < 0.3).double()
                                  for size in spec.state_sizes)
    elif options.get("zoneout") == "eval":
        kwargs["zoneout"] = tuple(torch.tensor(0.3, dtype=torch.float64)
                                  for _ in spec.state_sizes)
    return kwargs


def outputs_and_grads(kernel, spec, x, state0, params, **kwargs):
    outputs, final = kernel.run(spec, x, state0, params, **kwargs)
    gen = torch.Generator().manual_seed(11)
    # random weights on every output so each gradient path is exercised
    loss = (outputs * torch.randn(outputs.shape, generator=gen, dtype=outputs.dtype)).sum()
    loss = loss + sum((s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
                      for s in final)
    leaves = [x, *state0, *params.values()]
    grads = torch.autograd.grad(loss, leaves, materialize_grads=True)  # (h0 of SRU/QRNN: unused)
    return outputs, final, grads


@pytest.mark.parametrize("option", list(SEQ_OPTIONS))
@pytest.mark.parametrize("name,spec", CASES, ids=[c[0] for c in CASES])
def test_bptt_matches_reference_float64(name, spec, option):
    params = random_params(spec)
    x, state0 = random_inputs(spec, seq_len=6, batch=4)
    kwargs = kernel_options(spec, SEQ_OPTIONS[option], 6, 4)
    want = outputs_and_grads(reference, spec, x, state0, params, **kwargs)
    got = outputs_and_grads(bptt, spec, x, state0, params, **kwargs)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-10)
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
    names = ["x", *(f"state0[{i}]" for i in range(len(state0))), *params]
    for label, g, w in zip(names, got[2], want[2]):
        assert g is not None and w is not None, label
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10, msg=lambda m: f"{label}: {m}")


def test_bptt_matches_reference_float32():
    _, spec = CASES[10]  # lstm with every option
    params = {k: v.detach().float().requires_grad_() for k, v in random_params(spec).items()}
    x, state0 = random_inputs(spec, seq_len=7, batch=3, dtype=torch.float32)
    want = outputs_and_grads(reference, spec, x, state0, params, reverse=True)
    got = outputs_and_grads(bptt, spec, x, state0, params, reverse=True)
    for g, w in zip(got[2], want[2]):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,spec", CASES, ids=[c[0] for c in CASES])
def test_bptt_gradcheck(name, spec):
    params = random_params(spec, seed=2)
    x, state0 = random_inputs(spec, seq_len=4, batch=2, seed=3)
    kwargs = kernel_options(spec, {"lengths": [4, 2], "zoneout": "train", "h_mask": True},
                            4, 2)
    names = list(params)

    def fn(x, *tensors):
        state = tensors[:len(state0)]
        p = dict(zip(names, tensors[len(state0):]))
        outputs, final = bptt.run(spec, x, state, p, **kwargs)
        return (outputs, *final)

    assert torch.autograd.gradcheck(fn, (x, *state0, *params.values()), eps=1e-6,
                                    atol=1e-7)
    kwargs["reverse"] = True
    assert torch.autograd.gradcheck(fn, (x, *state0, *params.values()), eps=1e-6,
                                    atol=1e-7)


def test_final_state_of_each_sequence_is_its_own_last_step():
    _, spec = CASES[5]  # plain lstm
    params = random_params(spec)
    x, state0 = random_inputs(spec, seq_len=6, batch=2)
    _, final = bptt.run(spec, x, state0, params, lengths=torch.tensor([6, 3]))
    _, short = bptt.run(spec, x[:3, 1:], tuple(s[1:] for s in state0), params)
    for f, s in zip(final, short):
        torch.testing.assert_close(f[1:], s, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,spec", [CASES[0], CASES[5]], ids=["rnn", "lstm"])
def test_graph_is_freed_after_backward(name, spec):
    """No reference cycle keeps a sequence's graph (and its caches) alive."""
    import gc
    import weakref

    params = random_params(spec)
    x, state0 = random_inputs(spec, seq_len=5, batch=2)
    outputs, final = bptt.run(spec, x, state0, params)
    (outputs.sum() + sum(s.sum() for s in final)).backward()
    refs = [weakref.ref(t) for t in (outputs, *final)]
    del outputs, final
    gc.collect()
    assert all(ref() is None for ref in refs)
