"""The fused C++ kernels against the reference kernel, their ops, and the fallback path."""
import os
import subprocess
import sys
import warnings

import pytest
import torch

import rnnkit
from rnnkit.cells import CellSpec, get_activation
from rnnkit.kernels import bptt, dispatch, reference
from tests.util import random_inputs, random_params, spec_cases

cpu = pytest.importorskip("rnnkit.kernels.cpu")
if cpu.unavailable_reason() is not None:  # pragma: no cover - only on machines without g++
    pytest.skip(f"fused CPU kernel unavailable: {cpu.unavailable_reason()}",
                allow_module_level=True)

UNBOUNDED = {"indrnn", "sru", "mingru", "minlstm"}  # outputs not squashed to [-1, 1]
TOLERANCE = {torch.float64: dict(rtol=1e-10, atol=1e-10),
             torch.float32: dict(rtol=1e-5, atol=1e-5)}
SCENARIOS = ["plain", "reverse-lengths", "dropout-zoneout", "eval-zoneout"]


def _options(spec, scenario, seq_len, batch, dtype, seed=3):
    """Keyword arguments of ``run`` for one scenario: lengths, masks, zoneout."""
    gen = torch.Generator().manual_seed(seed)
    if scenario == "plain":
        return {}
    if scenario == "reverse-lengths":
        lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
        lengths[0] = seq_len
        return dict(reverse=True, lengths=lengths)
    if scenario == "dropout-zoneout":
        h_mask = (torch.rand(batch, spec.output_size, generator=gen) < 0.7).to(dtype) / 0.7
        zoneout = tuple((torch.rand(seq_len, batch, size, generator=gen) < 0.3).to(dtype)
                        for size in spec.state_sizes)
        lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
        return dict(h_mask=h_mask, zoneout=zoneout, lengths=lengths)
    return dict(zoneout=tuple(torch.tensor(0.25, dtype=dtype) for _ in spec.state_sizes))


def _run_with_grads(kernel, spec, x, state0, params, options, seed=5):
    """Outputs, final state and the gradients of a random linear loss w.r.t. everything."""
    outputs, state = kernel(spec, x, state0, params, **options)
    gen = torch.Generator().manual_seed(seed)
    loss = (outputs * torch.randn(outputs.shape, generator=gen, dtype=x.dtype)).sum()
    for s in state:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=x.dtype)).sum()
    inputs = [x, *state0, *params.values()]
    grads = torch.autograd.grad(loss, inputs, materialize_grads=True)  # (SRU/QRNN h0: unused)
    names = ["x", *(f"state0[{i}]" for i in range(len(state0))), *params]
    return outputs, state, dict(zip(names, grads))


def _assert_matches(spec, seq_len, batch, dtype, options_fn, seed=0, relative=False):
    """cpu.run against reference.run; ``relative``: tolerance scaled by each tensor's size
    (float32 sums over hundreds of rows round to ~1e-6 of their magnitude)."""
    params = random_params(spec, dtype=dtype, seed=seed)
    x, state0 = random_inputs(spec, seq_len, batch, dtype=dtype, seed=seed + 1)
    options = options_fn(spec, seq_len, batch, dtype)
    want = _run_with_grads(reference.run, spec, x, state0, params, options)
    got = _run_with_grads(cpu.run, spec, x, state0, params, options)
    pairs = [("outputs", got[0], want[0])]
    pairs += [(f"final state {i}", g, w) for i, (g, w) in enumerate(zip(got[1], want[1]))]
    pairs += [(f"gradient of {name}", got[2][name],
               torch.zeros_like(got[2][name]) if w is None else w)
              for name, w in want[2].items()]
    for what, g, w in pairs:
        tol = dict(TOLERANCE[dtype])
        if relative:
            tol["atol"] *= max(1.0, w.abs().max().item())
        error = (g - w).abs().max().item()
        torch.testing.assert_close(g, w, **tol, msg=f"{what}: max error {error:.3g}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("case", spec_cases(), ids=lambda c: c[0])
def test_matches_reference(case, scenario, dtype):
    _, spec = case
    for seq_len, batch in ((1, 1), (4, 3)):
        _assert_matches(spec, seq_len, batch, dtype,
                        lambda s, t, b, d: _options(s, scenario, t, b, d))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("family", ["lstm", "lstm-proj", "gru", "gru-reset-before", "rnn"])
def test_matches_reference_wide_batch(family, dtype):
    """Big enough for packed GEMMs and threaded pointwise passes; H not a vector multiple."""
    specs = {"lstm": CellSpec("lstm", 7, 37, peephole=True, layer_norm=True),
             "lstm-proj": CellSpec("lstm", 7, 37, proj_size=19),
             "gru": CellSpec("gru", 7, 37), "rnn": CellSpec("rnn", 7, 37),
             "gru-reset-before": CellSpec("gru", 7, 37, reset_after=False)}
    _assert_matches(specs[family], 3, 130, dtype,
                    lambda s, t, b, d: _options(s, "dropout-zoneout", t, b, d), relative=True)


@pytest.mark.parametrize("scenario", ["plain", "reverse-lengths", "dropout-zoneout"])
@pytest.mark.parametrize("family", ["lstm-all", "lstm", "gru", "gru-reset-before", "rnn",
                                    "rnn-wide"])
@pytest.mark.parametrize("seq_len, batch", [(20, 60), (600, 1)])
def test_matches_reference_over_several_backward_chunks(family, scenario, seq_len, batch):
    """Long enough that backward hands its gradients to the weight GEMMs in several chunks
    of steps (ChunkPlan: about 256 rows each), first steps of sequences in any chunk. (The
    LSTM's 24 and rnn-wide's 17 rows of d_z^T take the shared product of weight_grads_chunk,
    the rnn's 6 the separate ones. rnn-wide is a sigmoid RNN: with tanh, 17 units' gradients
    grow to ~1e5 over 600 steps and any two summation orders differ by 1e-10 of that.)"""
    specs = {"lstm-all": CellSpec("lstm", 3, 6, peephole=True, layer_norm=True, proj_size=4),
             "lstm": CellSpec("lstm", 3, 6), "gru": CellSpec("gru", 3, 6),
             "gru-reset-before": CellSpec("gru", 3, 6, reset_after=False),
             "rnn": CellSpec("rnn", 3, 6),
             "rnn-wide": CellSpec("rnn", 3, 17, activation=get_activation("sigmoid"))}
    _assert_matches(specs[family], seq_len, batch, torch.float64,
                    lambda s, t, b, d: _options(s, scenario, t, b, d))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("case", spec_cases(), ids=lambda c: c[0])
def test_inference_entry_point_matches_reference(case, scenario, dtype, monkeypatch):
    """Without gradients cpu.run calls the library's plain entry point (rnnkit_cpu.forward);
    same results as the reference."""
    _, spec = case
    calls = []
    entry = cpu._EXT["forward"]
    monkeypatch.setitem(cpu._EXT, "forward",
                        lambda *args: calls.append(1) or entry(*args))
    params = {k: v.detach() for k, v in random_params(spec, dtype=dtype).items()}
    for seq_len, batch in ((1, 1), (5, 20)):
        x, state0 = random_inputs(spec, seq_len, batch, dtype=dtype)
        x, state0 = x.detach(), tuple(s.detach() for s in state0)
        options = _options(spec, scenario, seq_len, batch, dtype)
        with torch.no_grad():
            got = cpu.run(spec, x, state0, params, **options)
            want = reference.run(spec, x, state0, params, **options)
        for g, w in zip((got[0], *got[1]), (want[0], *want[1])):
            torch.testing.assert_close(g, w, **TOLERANCE[dtype])
    assert len(calls) == (0 if case[0] == "rnn-custom" else 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", spec_cases(), ids=lambda c: c[0])
def test_saturated_and_nan_inputs_match_reference(case, dtype):
    """Pre-activations of every magnitude up to ~1e18 saturate the gates as torch's do (the
    kernels' exp clamps its exponent, not x), and a NaN in the input reaches the same
    outputs as in the reference: it is not clamped into a finite gate."""
    _, spec = case
    seq_len, batch = 40, 3
    params = random_params(spec, dtype=dtype, seed=4)
    x, state0 = random_inputs(spec, seq_len, batch, dtype=dtype, seed=5)
    x = x.detach()
    # |x_0| from 1 to 1e18 in steps of ~1.4x, alternating in sign: every float and
    # double range of exp's argument is crossed, the overflowing ones included
    magnitude = torch.logspace(0, 18, seq_len * batch, dtype=torch.float64)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(seq_len * batch // 2)
    x[:, :, 0] = (magnitude * sign).view(seq_len, batch).to(dtype)
    x[20, 1, 1 % spec.input_size] = float("nan")  # batch element 1 from step 20 on
    with torch.no_grad():
        want, want_state = reference.run(spec, x, state0, params)
        got, got_state = cpu.run(spec, x, state0, params)
    for what, g, w in [("outputs", got, want),
                       *((f"final state {i}", g, w) for i, (g, w)
                         in enumerate(zip(got_state, want_state)))]:
        assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{what}: NaN pattern differs"
        tolerance = TOLERANCE[dtype]
        if spec.family in UNBOUNDED and dtype == torch.float32:
            # the state is not squashed: inputs of 1e18 through a gate leave float32
            # rounding of the gate (1e-7) times values that cancel; measured up to 3e-5
            tolerance = dict(rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(g, w, **tolerance, equal_nan=True, msg=what)
    assert torch.isnan(got[20:, 1]).all() and not torch.isnan(got[:, 0]).any()


@pytest.mark.parametrize("seq_len,batch", [(5, 200), (1, 5)], ids=["sequence", "decode-step"])
def test_results_do_not_depend_on_thread_count(seq_len, batch):
    """Each output element is computed by one thread in a fixed order: bit-identical
    results at 1 and 2+ threads, forward and backward (the decoding step's unpacked
    products included)."""
    spec = CellSpec("lstm", 8, 45, layer_norm=True)
    params = random_params(spec, dtype=torch.float64)
    x, state0 = random_inputs(spec, seq_len, batch, dtype=torch.float64)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            results.append(_run_with_grads(cpu.run, spec, x, state0, params, {}))
    finally:
        torch.set_num_threads(threads)
    (out1, state1, grads1), (out2, state2, grads2) = results
    assert torch.equal(out1, out2)
    for a, b in zip(state1, state2):
        assert torch.equal(a, b)
    for name in grads1:
        assert torch.equal(grads1[name], grads2[name]), name


def test_custom_activation_runs_on_bptt(monkeypatch):
    spec = dict(spec_cases())["rnn-custom"]
    calls = []
    monkeypatch.setattr(bptt, "run", lambda *a, **k: calls.append(1) or reference.run(*a, **k))
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    cpu.run(spec, x, state0, params)
    assert calls == [1]


def test_inference_saves_nothing():
    spec = CellSpec("lstm", 3, 5)
    params = {k: v.detach() for k, v in random_params(spec).items()}
    x, state0 = random_inputs(spec, 4, 2)
    with torch.no_grad():
        outputs, _ = cpu.run(spec, x, state0, params)
    _, _, saved = torch.ops.rnnkit.cell_forward(
        x.detach(), [s.detach() for s in state0], list(params.values()), [], None,
        [None, None], None, False, False, cpu.ops.kernel_options(spec))
    assert saved == []
    torch.testing.assert_close(outputs, reference.run(spec, x, state0, params)[0])


# --- The ops themselves: opcheck and gradcheck. ---

def _op_cases():
    """A spec for every family and option set of the ops."""
    return [
        CellSpec("lstm", 3, 4),
        CellSpec("lstm", 3, 4, peephole=True, proj_size=2, layer_norm=True),
        CellSpec("gru", 3, 4),
        CellSpec("gru", 3, 4, reset_after=False),
        CellSpec("rnn", 3, 4, activation=get_activation("relu")),
        CellSpec("indrnn", 3, 4, activation=get_activation("relu")),
        CellSpec("sru", 3, 4),
        CellSpec("qrnn", 3, 4),
        CellSpec("mingru", 3, 4),
        CellSpec("minlstm", 3, 4),
    ]


def _op_args(spec, save=True, masks=False, seq_len=3, batch=2, packed=False):
    """The arguments of rnnkit::cell_forward for ``spec``."""
    params = random_params(spec)
    x, state0 = random_inputs(spec, seq_len, batch)
    param_list = list(params.values())
    packed_list = cpu.ops.packed_list(spec, param_list, backward=False) if packed else []
    T, B = seq_len, batch
    mask = torch.ones(T, B, dtype=x.dtype) if masks else None
    keeps = [torch.full((T, B, s), 0.8, dtype=x.dtype) if masks else None
             for s in spec.state_sizes]
    h_mask = torch.full((B, spec.output_size), 1.25, dtype=x.dtype) if masks else None
    return (x, list(state0), param_list, packed_list, mask, keeps, h_mask, spec.family != "lstm",
            save, cpu.ops.kernel_options(spec))


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("masks", [False, True], ids=["plain", "masks"])
@pytest.mark.parametrize("index", range(len(_op_cases())))
def test_opcheck_forward(index, masks, packed):
    spec = _op_cases()[index]
    torch.library.opcheck(torch.ops.rnnkit.cell_forward,
                          _op_args(spec, masks=masks, packed=packed))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_pack_weight(dtype):
    # the fake's panel width is read off the kernel: two vectors of the ISA it was built for
    w = torch.randn(7, 5, dtype=dtype)
    for transpose in (False, True):
        torch.library.opcheck(torch.ops.rnnkit.pack_weight, (w, transpose))


def test_library_is_built_with_openmp():
    # at::parallel_for is inlined from ATen's headers: without -fopenmp it silently runs
    # every loop on the calling thread. The library must link OpenMP, and in this process
    # the copy torch loaded (one runtime, one thread pool).
    library = cpu.load()
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True,
                             check=True).stdout
    assert "libgomp" in dynamic, dynamic
    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "libgomp" in line}
    assert len(loaded) == 1, loaded


@pytest.mark.parametrize("grads", ["all", "outputs-only"])
@pytest.mark.parametrize("index", range(len(_op_cases())))
def test_opcheck_backward(index, grads):
    spec = _op_cases()[index]
    x, state0, params, _, mask, keeps, h_mask, reverse, save, options = _op_args(spec,
                                                                              masks=True)
    x, state0 = x.detach(), [s.detach() for s in state0]
    params = [p.detach() for p in params]
    outputs, final, saved = torch.ops.rnnkit.cell_forward(x, state0, params, [], mask, keeps,
                                                          h_mask, reverse, save, options)
    d_final = [torch.randn_like(s) if grads == "all" else None for s in final]
    backward_args = (torch.randn_like(outputs), d_final, x, state0, outputs, params, [], saved,
                     mask, keeps, h_mask, reverse, options)
    torch.library.opcheck(torch.ops.rnnkit.cell_backward, backward_args)


@pytest.mark.parametrize("index", range(len(_op_cases())))
def test_gradcheck(index):
    spec = _op_cases()[index]
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    gen = torch.Generator().manual_seed(7)
    options = dict(lengths=torch.tensor([3, 2]), h_mask=torch.rand(
        2, spec.output_size, generator=gen, dtype=torch.float64) + 0.5,
        zoneout=tuple(torch.full((3, 2, s), 0.3, dtype=torch.float64)
                      for s in spec.state_sizes))
    names = list(params)
    count = len(state0)

    def fn(x, *tensors):
        outputs, state = cpu.run(spec, x, tensors[:count], dict(zip(names, tensors[count:])),
                                 reverse=True, **options)
        return (outputs, *state)

    assert torch.autograd.gradcheck(fn, (x, *state0, *params.values()))


def test_torch_compile():
    spec = CellSpec("lstm", 3, 5, peephole=True)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 4, 2)

    def loss_fn(x, h0, c0, *weights):
        outputs, (h, c) = cpu.run(spec, x, (h0, c0), dict(zip(params, weights)))
        return outputs.square().sum() + h.sum() + c.sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    inputs = (x, *state0, *params.values())
    got = torch.autograd.grad(compiled(*inputs), inputs)
    want = torch.autograd.grad(loss_fn(*inputs), inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


# --- Dispatch and the fallback when the extension is unavailable. ---

def test_dispatch_picks_fused_kernel_for_cpu_floats():
    x = torch.zeros(2, 1, 3)
    assert dispatch.choose_kernel(x) == ("cpu" if "RNNKIT_KERNEL" not in os.environ
                                         else os.environ["RNNKIT_KERNEL"])
    assert not cpu.supports(x.to(torch.int64))


def test_fallback_warns_once_and_uses_bptt(monkeypatch):
    monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    monkeypatch.setattr(dispatch, "_cpu_state", {})
    monkeypatch.setattr(cpu, "unavailable_reason", lambda: "simulated build failure")
    spec = CellSpec("gru", 3, 4)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1, _ = dispatch.run(spec, x, state0, params)
        out2, _ = dispatch.run(spec, x, state0, params)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "simulated build failure" in messages[0]
    assert dispatch.choose_kernel(x) == "bptt"
    torch.testing.assert_close(out1, bptt.run(spec, x, state0, params)[0])


@pytest.mark.parametrize("env", [{"RNNKIT_CPU_DISABLE": "1"},
                                 {"CXX": "/nonexistent/c++", "RNNKIT_CACHE": "{tmp}"}],
                         ids=["disabled", "no-compiler"])
def test_unavailable_extension_in_fresh_process(env, tmp_path):
    """A fresh process without the extension: a reason, one warning, the bptt kernel."""
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    script = (
        "import warnings, torch\n"
        "from rnnkit.cells import CellSpec\n"
        "from rnnkit.kernels import cpu, dispatch\n"
        "print('reason:', cpu.unavailable_reason())\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    spec = CellSpec('lstm', 2, 3)\n"
        "    params = {k: torch.randn(s) for k, s in spec.param_shapes().items()}\n"
        "    x = torch.randn(2, 1, 2)\n"
        "    for _ in range(2):\n"
        "        dispatch.run(spec, x, (torch.zeros(1, 3), torch.zeros(1, 3)), params)\n"
        "print('kernel:', dispatch.choose_kernel(x), 'warnings:', len(w))\n")
    environment = {**os.environ, **env}
    environment.pop("RNNKIT_KERNEL", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=environment, timeout=120, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr
    assert "reason: None" not in result.stdout
    assert "kernel: bptt warnings: 1" in result.stdout


# --- Weights are read at every call: no cache can go stale. ---

def _cell_reference(cell, x, state):
    """One step of ``cell`` on the reference kernel with its current parameters."""
    params = {name: getattr(cell, name) for name in cell._spec.param_names()}
    states = state if isinstance(state, tuple) else (state,)
    _, new = reference.run(cell._spec, x.unsqueeze(0), states, params)
    return new if isinstance(state, tuple) else new[0]


@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTMCell(5, 7, dtype=torch.float64),
    lambda: rnnkit.LSTMCell(5, 7, peephole=True, layer_norm=True, dtype=torch.float64),
    lambda: rnnkit.GRUCell(5, 7, dtype=torch.float64),
    lambda: rnnkit.GRUCell(5, 7, reset_after=False, dtype=torch.float64),
    lambda: rnnkit.RNNCell(5, 7, dtype=torch.float64)], ids=["lstm", "lstm-all", "gru",
                                                             "gru-reset-before", "rnn"])
@pytest.mark.parametrize("batch", [1, 20])
def test_every_weight_update_is_seen_by_the_next_step(make, batch, monkeypatch):
    """Nothing is cached across calls: an optimizer step, in-place updates, load_state_dict,
    a new tensor behind a parameter and writes through ``.data`` (invisible to
    ``_version``: EMA averaging, weight surgery) all reach the next step."""
    monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(batch, 5, dtype=torch.float64)
    state = tuple(torch.randn(batch, s, dtype=torch.float64) for s in cell._spec.state_sizes)
    state = state if cell.family == "lstm" else state[0]

    def check():
        with torch.no_grad():
            got, want = cell(x, state), _cell_reference(cell, x, state)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)

    check()
    optimizer = torch.optim.SGD(cell.parameters(), lr=0.5)
    with torch.enable_grad():
        out = cell(x, state)
        sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    optimizer.step()
    check()
    with torch.no_grad():  # any in-place update
        cell.weight_ih.mul_(-1.5)
        cell.weight_hh.add_(0.25)
    check()
    cell.load_state_dict({k: v * 0.5 for k, v in cell.state_dict().items()})
    check()
    cell.weight_hh.data = cell.weight_hh.data * 2  # a new tensor behind the parameter
    check()
    cell.weight_hh.data.mul_(3)  # invisible to _version
    cell.weight_ih.data.copy_(torch.randn_like(cell.weight_ih))
    check()


def test_cached_single_steps_train_like_the_reference(monkeypatch):
    """Training a decoder step by step (T = 1 calls, cached packs) gives the reference's
    gradients, also after optimizer steps change the weights."""
    monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    torch.manual_seed(1)
    cell = rnnkit.LSTMCell(4, 20, dtype=torch.float64)
    twin = rnnkit.LSTMCell(4, 20, dtype=torch.float64)
    twin.load_state_dict(cell.state_dict())
    opt, opt_twin = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (cell, twin))
    xs = torch.randn(3, 6, 17, 4, dtype=torch.float64)
    for x in xs:
        for module, optimizer, kernel in ((cell, opt, None), (twin, opt_twin, "reference")):
            if kernel:
                monkeypatch.setenv("RNNKIT_KERNEL", kernel)
            state = None
            loss = 0
            for x_t in x:
                state = module(x_t, state)
                loss = loss + (state[0] ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
        for name, p in cell.named_parameters():
            torch.testing.assert_close(p, getattr(twin, name), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("loss_on", ["outputs-sum", "final-state", "outputs-only-c"])
@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_gradients_when_some_outputs_get_none(family, loss_on):
    """Gradients reach only some outputs (None for the others; an expanded one for a sum):
    the kernels take them without materialised zeros and agree with the reference."""
    spec = CellSpec(family, 3, 6)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 5, 4)
    results = []
    for kernel in (cpu.run, reference.run):
        outputs, state = kernel(spec, x, state0, params, reverse=True,
                                lengths=torch.tensor([5, 2, 4, 1]))
        if loss_on == "outputs-sum":
            loss = outputs.sum()
        elif loss_on == "final-state":
            loss = (state[0] ** 2).sum()
        else:
            loss = state[-1].sum() * 2
        inputs = [x, *state0, *params.values()]
        results.append(torch.autograd.grad(loss, inputs, allow_unused=True))
    for got, want in zip(*results):
        if want is None:
            assert got is None or not got.abs().max() > 0
        else:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_double_backward_matches_the_reference(family):
    """create_graph=True: the gradient has a graph, and the second derivative is the
    reference's (it used to come back without a graph: zero second derivatives)."""
    spec = CellSpec(family, 3, 4)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    results = []
    for kernel in (cpu.run, bptt.run, reference.run):
        outputs, state = kernel(spec, x, state0, params, lengths=torch.tensor([3, 2]))
        loss = outputs.square().sum() + state[-1].sum()
        (g,) = torch.autograd.grad(loss, [x], create_graph=True)
        results.append(torch.autograd.grad(g.square().sum(), [x, *state0, *params.values()]))
    for got in results[:2]:
        for a, b in zip(got, results[2]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel", ["cpu", "bptt"])
def test_gradgradcheck_and_batched_gradcheck(kernel):
    spec = CellSpec("lstm", 2, 3, peephole=True)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 3, 2)
    run = cpu.run if kernel == "cpu" else bptt.run

    def f(x, h0, c0, *weights):
        outputs, (h_n, c_n) = run(spec, x, (h0, c0), dict(zip(spec.param_names(), weights)))
        return outputs, c_n

    inputs = (x, *state0, *params.values())
    assert torch.autograd.gradcheck(f, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("family", ["lstm", "gru", "sru", "minlstm"])
def test_serial_and_split_calls_give_identical_results(family):
    """The threads of a call (set_parallel_min_work) change speed only: each element is
    computed by one thread in a fixed order, so a call split across two threads and the
    same call on one are equal to the bit, outputs and every gradient."""
    spec = CellSpec(family, 96, 128)
    params = random_params(spec, dtype=torch.float32, seed=0)
    x, state0 = random_inputs(spec, 12, 48, dtype=torch.float32, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    runs = []
    try:
        for work in (0, 10 ** 15):  # split every loop; no loop split
            previous = cpu.set_parallel_min_work(work)
            try:
                runs.append(_run_with_grads(cpu.run, spec, x, state0, params, {}))
            finally:
                cpu.set_parallel_min_work(previous)
    finally:
        torch.set_num_threads(threads)
    (out_a, state_a, grads_a), (out_b, state_b, grads_b) = runs
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(state_a, state_b))
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


def test_set_parallel_min_work_rejects_negative():
    with pytest.raises(RuntimeError, match="work must be >= 0, got -1"):
        cpu.set_parallel_min_work(-1)
