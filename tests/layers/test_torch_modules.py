"""PyTorch's generic module tests (test/test_modules.py) over the module_db entries for
torch.nn.RNN, GRU, LSTM, RNNCell, GRUCell and LSTMCell, rewritten for pytest.

Every test runs for torch.nn's class (the control: if it fails, the adaptation is wrong) and
for rnnkit's (the subject), with rnnkit's default kernel and with RNNKIT_KERNEL=bptt. The
sample inputs and error inputs are module_db's own (module_inputs_func /
module_error_inputs_func from torch.testing._internal.common_modules of the installed torch).
Where a test compares, the subject gets the state_dict of a torch.nn module built with the
same arguments and both see the same inputs. Known rnnkit failures are strict xfails naming
their item of issue 14. Tests of test_modules.py left out are in NOT_ADAPTED with the reason.
"""
import io
import itertools

import pytest
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from tests.layers.torch_compat import (  # noqa: F401 (impl, kernel are fixtures)
    NAMES, assert_same, impl, kernel, make_pair, module_class, tensors_of)
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db  # noqa: E402
from torch.testing._internal.common_utils import gradcheck, gradgradcheck  # noqa: E402

NOT_ADAPTED = {
    "test_check_inplace": "only for modules with an `inplace` argument; RNNs have none",
    "test_multiple_device_transfer (CUDA part)": "needs CUDA devices; the CPU transfer is "
                                                 "test_multiple_device_transfer_cpu",
    "test_cpu_gpu_parity (GPU part)": "needs CUDA; its CPU comparison is test_cpu_gpu_parity "
                                      "with torch.nn's CPU module as the reference",
    "test_memory_format (channels_last)": "the samples are 1-3-D; only the contiguous "
                                          "format applies, and that part is adapted",
}

INFOS = {info.module_cls.__name__: info for info in module_db
         if info.module_cls.__name__ in NAMES and info.module_cls.__module__.startswith("torch.nn")}
assert sorted(INFOS) == sorted(NAMES), sorted(INFOS)


def samples(name, dtype=torch.float64, requires_grad=False, training=True, **kwargs):
    info = INFOS[name]
    return list(info.module_inputs_func(info, device="cpu", dtype=dtype,
                                        requires_grad=requires_grad, training=training,
                                        **kwargs))


def build(impl, name, sample, dtype):
    """The class under test built from a sample's constructor input, as test_modules does
    (construct, then ``.to(dtype)``), with the weights of the torch.nn twin; and that twin."""
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    return make_pair(impl, name, *args, dtype=dtype, **kwargs)


def call(module, sample):
    return module(*sample.forward_input.args, **sample.forward_input.kwargs)


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_forward(name, dtype, training, impl, kernel):
    """test_forward: the output equals the sample's reference function (the unbatched input
    run as a batch of one) and torch.nn's output; after ``.float()``/``.double()`` the
    parameters keep the dtype and the module still runs."""
    torch.manual_seed(0)
    for sample in samples(name, dtype, training=training):
        reference, module = build(impl, name, sample, dtype)
        module.train(training)
        reference.train(training)
        output = call(module, sample)
        assert_same(output, call(reference, sample))
        if sample.reference_fn is not None:
            assert_same(output, sample.reference_fn(module, *sample.forward_input.args,
                                                    **sample.forward_input.kwargs))
        module.float() if dtype == torch.float32 else module.double()
        assert_same(call(module, sample), output)
        assert all(p.dtype == dtype and p.device.type == "cpu" for p in module.parameters())


@pytest.mark.parametrize("name", ["RNN", "GRU"])
def test_forward_packed_sequence(name, impl, kernel):
    """module_db's packed-sequence samples (module_inputs_func(..., with_packed_sequence=True),
    not used by test_modules.py itself): the same outputs as torch.nn."""
    torch.manual_seed(0)
    packed = [s for s in samples(name, with_packed_sequence=True)
              if isinstance(s.forward_input.args[0], torch.nn.utils.rnn.PackedSequence)]
    assert packed
    for sample in packed:
        reference, module = build(impl, name, sample, torch.float64)
        output, expected = call(module, sample), call(reference, sample)
        assert torch.equal(output[0].batch_sizes, expected[0].batch_sizes)
        assert_same(output, expected)


@pytest.mark.parametrize("name", NAMES)
def test_factory_kwargs(name, impl, kernel):
    """test_factory_kwargs: device= and dtype= given to the constructor reach every
    parameter (and buffer)."""
    for sample in samples(name, torch.float32):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        for dtype in (torch.float64, torch.float32):
            module = module_class(impl, name)(*args, device="cpu", dtype=dtype, **kwargs)
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                assert tensor.device == torch.device("cpu")
                assert tensor.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_multiple_device_transfer_cpu(name, impl, kernel):
    """test_multiple_device_transfer, its CPU part: forward, ``.cpu()``, forward, ``.to('cpu')``,
    forward; the parameters stay CPU float64 and the output does not change."""
    torch.manual_seed(0)
    for sample in samples(name):
        _, module = build(impl, name, sample, torch.float64)
        first = call(module, sample)
        for move in (lambda m: m.cpu(), lambda m: m.to("cpu")):
            assert move(module) is module
            assert_same(call(module, sample), first)
            assert all(p.device.type == "cpu" and p.dtype == torch.float64
                       for p in module.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_repr(name, impl, kernel):
    """test_repr: repr() and str() work for every sample's module."""
    for sample in samples(name):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        module = module_class(impl, name)(*args, **kwargs).double()
        assert repr(module) and str(module)


# ---------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("name", NAMES)
def test_pickle(name, impl, kernel):
    """test_pickle: torch.save(module) / torch.load give a module with the same output."""
    torch.manual_seed(0)
    for sample in samples(name):
        _, module = build(impl, name, sample, torch.float64)
        output = call(module, sample)
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        copy = torch.load(buffer, weights_only=False)
        assert_same(call(copy, sample), output)


@pytest.mark.parametrize("name", NAMES)
def test_save_load(name, impl, kernel):
    """test_save_load: the saved module gives the same output, and the state_dict survives
    torch.save/torch.load, also with weights_only=True, and loads into a fresh module."""
    torch.manual_seed(0)
    for sample in samples(name):
        _, module = build(impl, name, sample, torch.float64)
        state = module.state_dict()
        output = call(module, sample)
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        assert_same(call(torch.load(buffer, weights_only=False), sample), output)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        for weights_only in (False, True):
            buffer.seek(0)
            loaded = torch.load(buffer, weights_only=weights_only)
            assert list(loaded) == list(state)
            assert_same(list(loaded.values()), list(state.values()), rtol=0, atol=0)
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        fresh = module_class(impl, name)(*args, **kwargs).double()
        fresh.load_state_dict(loaded)
        assert_same(call(fresh, sample), output)


# ---------------------------------------------------------------------------- gradients


def _make_non_contiguous(obj):
    """Same values, every tensor of dimension >= 1 a strided view (test_modules' recipe:
    repeat each element along the last dimension and take every second one)."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(_make_non_contiguous(o) for o in obj)
    if not torch.is_tensor(obj) or obj.dim() == 0:
        return obj
    strided = torch.repeat_interleave(obj.detach(), 2, dim=-1)[..., ::2]
    assert not strided.is_contiguous() or strided.size(-1) <= 1
    return strided.requires_grad_(obj.requires_grad)


def _clone_leaves(obj, **clone_options):
    """A detached copy of the (nested) inputs, requiring grad where the originals do."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(_clone_leaves(o, **clone_options) for o in obj)
    return obj.detach().clone(**clone_options).requires_grad_(obj.requires_grad)


def _leaves(obj):
    return [t for t in tensors_of(obj) if t.requires_grad]


def _backward(module, args, grad_outputs):
    """Zero the gradients, run forward and backward; the outputs, input grads, param grads."""
    for tensor in _leaves(args) + list(module.parameters()):
        tensor.grad = None
    outputs = module(*args)
    torch.autograd.backward(tensors_of(outputs), tensors_of(grad_outputs))
    return (outputs, [t.grad.clone() for t in _leaves(args)],
            [p.grad.clone() for p in module.parameters()])


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_tensors(name, impl, kernel):
    """test_non_contiguous_tensors: non-contiguous inputs / hidden states / output gradients
    give the same outputs and gradients as contiguous ones."""
    torch.manual_seed(0)
    for sample in samples(name, requires_grad=True):
        _, module = build(impl, name, sample, torch.float64)
        args = sample.forward_input.args
        outputs = module(*args)
        grad_outputs = tuple(torch.randn_like(t) for t in tensors_of(outputs))
        want = _backward(module, args, grad_outputs)
        for in_args, grads in itertools.product(
                (args, _make_non_contiguous(args)),
                (grad_outputs, _make_non_contiguous(grad_outputs))):
            got = _backward(module, in_args, grads)
            assert_same(got[0], want[0])
            assert_same(got[1], want[1])
            assert_same(got[2], want[2])


def _gradient_check(check, name, impl, chosen, partial_params):
    """test_modules' _test_gradients_helper: ``check`` (gradcheck / gradgradcheck, with the
    batched-gradient check on) of the module as a function of its inputs and parameters for
    the ``chosen`` samples (indices), then of the inputs and one parameter at a time for the
    first ``partial_params`` of them."""
    torch.manual_seed(0)
    all_samples = samples(name, requires_grad=True, training=False)
    for position, index in enumerate(chosen):
        sample = all_samples[index]
        _, module = build(impl, name, sample, torch.float64)
        params = tuple(module.parameters())
        args = sample.forward_input.args

        def function(*flat):
            new_args = tree_unflatten(list(flat), spec)[:len(args)]
            return tuple(tensors_of(module(*new_args)))

        flat, spec = tree_flatten(args + params)
        assert check(function, flat)
        if position >= partial_params:
            continue
        for param in params:
            param.requires_grad_(False)
        for param in params:
            param.requires_grad_(True)
            flat, spec = tree_flatten(args + params)
            assert check(function, flat)
            param.requires_grad_(False)
        for param in params:
            param.requires_grad_(True)


# Runtime: gradcheck of the total derivative covers every sample; the per-parameter checks
# (the samples' parameters one at a time) run on a layer's plain, with-hx and last
# (bias, batch_first, bidirectional, proj_size for LSTM) samples; gradgradcheck on those too.
SUBSET = (0, 1, -1)


@pytest.mark.parametrize("name", NAMES)
def test_grad(name, impl, kernel):
    """test_grad: gradcheck (fast mode, with the batched-gradient check under vmap) with
    respect to the inputs and all parameters, then per parameter (on SUBSET)."""
    count = len(samples(name))
    chosen = [i % count for i in SUBSET] + [i for i in range(count)
                                             if i not in {j % count for j in SUBSET}]
    _gradient_check(gradcheck, name, impl, chosen, partial_params=len(SUBSET))


@pytest.mark.parametrize("name", NAMES)
def test_gradgrad(name, impl, kernel):
    """test_gradgrad: gradgradcheck (with the batched-gradient check) on SUBSET of the
    samples, with respect to the inputs and all parameters."""
    count = len(samples(name))
    _gradient_check(gradgradcheck, name, impl, sorted({i % count for i in SUBSET}),
                    partial_params=0)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_gpu_parity(name, impl, kernel):
    """test_cpu_gpu_parity, its CPU comparison: torch.nn's CPU module is the reference, the
    subject stands where the GPU module stood (weights copied with ``.data.copy_`` before the
    first forward, as there); outputs equal, then five backward passes per output with the
    same input and parameter gradients."""
    torch.manual_seed(0)
    for sample in samples(name, requires_grad=True):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        reference = getattr(torch.nn, name)(*args, **kwargs).double()
        subject = module_class(impl, name)(*args, **kwargs).double()
        for mine, theirs in zip(subject.parameters(), reference.parameters(), strict=True):
            mine.data.copy_(theirs)
        ref_args = sample.forward_input.args
        sub_args = _clone_leaves(ref_args)
        ref_out, sub_out = tensors_of(reference(*ref_args)), tensors_of(subject(*sub_args))
        assert_same(sub_out, ref_out)
        for _ in range(5):
            for ref_o, sub_o in zip(ref_out, sub_out):
                grad = torch.randn_like(ref_o)
                ref_o.backward(grad, retain_graph=True)
                sub_o.backward(grad, retain_graph=True)
                assert_same([t.grad for t in _leaves(sub_args)],
                            [t.grad for t in _leaves(ref_args)])
                assert_same([p.grad for p in subject.parameters()],
                            [p.grad for p in reference.parameters()])


@pytest.mark.parametrize("name", NAMES)
def test_memory_format(name, impl, kernel):
    """test_memory_format for the contiguous format (the samples are 1-3-D): inputs cloned
    into the format and the module converted with preserve/contiguous format give the same
    outputs and gradients, and contiguous outputs and input gradients."""
    torch.manual_seed(0)
    for sample in samples(name, requires_grad=True):
        _, module = build(impl, name, sample, torch.float64)
        args = sample.forward_input.args
        desired = module(*args)
        grad_outputs = [torch.rand_like(t) for t in tensors_of(desired)]
        leaves = _leaves(args) + list(module.parameters())
        want = torch.autograd.grad(tensors_of(desired), leaves, grad_outputs)
        formatted = _clone_leaves(args, memory_format=torch.contiguous_format)
        for memory_format in (torch.preserve_format, torch.contiguous_format):
            module.to(memory_format=memory_format)
            outputs = module(*formatted)
            assert_same(outputs, desired)
            assert all(t.is_contiguous() for t in tensors_of(outputs))
            got = torch.autograd.grad(tensors_of(outputs),
                                      _leaves(formatted) + list(module.parameters()),
                                      grad_outputs)
            assert_same(got, want)
            assert all(g.is_contiguous() for g in got)


# ---------------------------------------------------------------------------- modes, devices


@pytest.mark.parametrize("name", NAMES)
def test_if_train_and_eval_modes_differ(name, impl, kernel):
    """test_if_train_and_eval_modes_differ: with the ``training`` attribute deleted, forward
    either works or fails on that attribute only where module_db says train and eval
    differ (the layers, for their dropout; never the cells)."""
    for sample in samples(name):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        module = module_class(impl, name)(*args, **kwargs).double()
        del module.training
        try:
            call(module, sample)
        except AttributeError as error:
            assert "'training'" in str(error)
            assert INFOS[name].train_and_eval_differ, f"{name} forward reads .training"


@pytest.mark.parametrize("name", NAMES)
def test_device_ctx_init(name, impl, kernel):
    """test_device_ctx_init: built under ``torch.device('meta')`` the parameters are meta
    tensors with the metadata (shape, dtype, strides) of the CPU-built module's."""
    for sample in samples(name, torch.float32):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        cpu_module = module_class(impl, name)(*args, **kwargs)
        with torch.device("meta"):
            meta_module = module_class(impl, name)(*args, **kwargs)
        pairs = list(zip(meta_module.named_parameters(), cpu_module.named_parameters(),
                         strict=True))
        for (meta_name, meta), (cpu_name, cpu) in pairs:
            assert meta_name == cpu_name and meta.is_meta
            assert (meta.shape, meta.dtype, meta.stride(), meta.requires_grad) == \
                (cpu.shape, cpu.dtype, cpu.stride(), cpu.requires_grad)


def _copy_parameters(destination, source):
    """Copy values parameter by parameter (load_state_dict would swap the tensors when
    swapping is on, which torch.nn's RNNs refuse: their weights hold weak references)."""
    with torch.no_grad():
        for mine, theirs in zip(destination.parameters(), source.parameters(), strict=True):
            mine.copy_(theirs)


@pytest.fixture(params=[False, True], ids=["assign", "swap"])
def swap(request):
    previous = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(request.param)
    yield request.param
    torch.__future__.set_swap_module_params_on_conversion(previous)


@pytest.mark.parametrize("set_grad", [False, True], ids=["no-grad", "with-grad"])
@pytest.mark.parametrize("name", NAMES)
def test_to(name, set_grad, swap, impl, kernel):
    """test_to: ``.to(device, dtype)`` over CPU and every module_db dtype keeps the Parameter
    objects; without swap the same tensors (``.data`` set), with swap the same objects with
    new contents; gradients follow. Then (an addition) the converted module still computes
    what torch.nn computes with the same weights."""
    torch.manual_seed(0)
    for sample in samples(name, torch.float32):
        reference, module = build(impl, name, sample, torch.float32)
        for param in module.parameters():
            if set_grad:
                param.grad = torch.randn_like(param)
        if swap and not set_grad:  # .to() after a forward and backward
            out = tensors_of(call(module, sample))[0]
            out.sum().backward()
            module.to(dtype=torch.half)
            module.to(dtype=torch.float32)
            _copy_parameters(reference, module)  # the round trip through half rounded them
        previous = torch.float32
        for dtype in INFOS[name].dtypes:
            ids = [id(p) for p in module.parameters()]
            cdatas = [p._cdata for p in module.parameters()]
            grad_cdatas = [p.grad._cdata for p in module.parameters()] if set_grad else None
            module.to(device="cpu", dtype=dtype)
            params = list(module.parameters())
            assert all(isinstance(p, torch.nn.Parameter) for p in params)
            assert all(p.device.type == "cpu" and p.dtype == dtype for p in params)
            assert [id(p) for p in params] == ids
            if swap:
                assert all(a != b for a, b in zip(cdatas, [p._cdata for p in params]))
            else:
                assert cdatas == [p._cdata for p in params]
            if set_grad:
                assert all(p.grad.dtype == dtype for p in params)
                same_grads = [a == p.grad._cdata for a, p in zip(grad_cdatas, params)]
                assert all(same_grads) if (not swap or dtype == previous) else not any(same_grads)
            previous = dtype
            reference.to(dtype)
            forward = [a.to(dtype) if torch.is_tensor(a) else tuple(t.to(dtype) for t in a)
                       for a in sample.forward_input.args]
            assert_same(module(*forward), reference(*forward))


@pytest.mark.parametrize("name", NAMES)
def test_to_empty(name, swap, impl, kernel):
    """test_to_empty: a module built on the meta device, ``to_empty(device='cpu')``: the
    parameters are CPU Parameters of the dtype, new tensors (swap: same objects). Then (an
    addition) after reset_parameters/load_state_dict it computes what torch.nn computes."""
    torch.manual_seed(0)
    for sample in samples(name, torch.float32):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        with torch.device("meta"):
            module = module_class(impl, name)(*args, **kwargs)
        ids = [id(p) for p in module.parameters()]
        cdatas = [p._cdata for p in module.parameters()]
        module.to_empty(device="cpu")
        params = list(module.parameters())
        assert all(isinstance(p, torch.nn.Parameter) and p.device.type == "cpu"
                   and p.dtype == torch.float32 for p in params)
        assert all(a != b for a, b in zip(cdatas, [p._cdata for p in params]))
        if swap:
            assert [id(p) for p in params] == ids
        else:
            assert all(a != b for a, b in zip(ids, [id(p) for p in params]))
        reference = getattr(torch.nn, name)(*args, **kwargs)
        _copy_parameters(module, reference)
        assert_same(call(module, sample), call(reference, sample))


# ---------------------------------------------------------------------------- errors


def _error_inputs(name):
    info = INFOS[name]
    return list(info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                              requires_grad=False, training=True))


def _error_cases():
    for name in NAMES:
        for index, error in enumerate(_error_inputs(name)):
            yield pytest.param(name, index, id=f"{name}-{index}-{error.error_type.__name__}-"
                                               f"{error.error_regex[:40]}")


@pytest.mark.parametrize("name,index", list(_error_cases()))
def test_errors(name, index, impl, kernel):
    """test_errors: every module_db error input raises the exception type torch raises
    (an isinstance check); the control must also match torch's message."""
    error = _error_inputs(name)[index]
    module_input = error.module_error_input
    cls = module_class(impl, name)
    c_args, c_kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    match = error.error_regex if impl == "torch" else None
    if error.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
        with pytest.raises(error.error_type, match=match):
            cls(*c_args, **c_kwargs)
    else:
        module = cls(*c_args, **c_kwargs)
        f_args, f_kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
        with pytest.raises(error.error_type, match=match):
            module(*f_args, **f_kwargs)
