"""The benchmark's machinery (``rnnkit bench``): timing, rows, arguments. Speeds themselves
are never asserted here (benchmarks/ and RESULTS.md hold them)."""
from rnnkit import bench


class FakeClock:
    """``bench.time`` with a ``perf_counter`` that moves only when a timed function says
    so: the timing logic is checked exactly, whatever the machine is doing."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_median_times_times_a_batch_of_calls_per_repeat(monkeypatch):
    clock = FakeClock()
    from rnnkit import timing
    monkeypatch.setattr(timing, "time", clock)
    calls = {"short": 0, "long": 0}

    def short():
        calls["short"] += 1
        clock.now += 1 / 1024  # binary fractions: every sum below is exact

    def long():
        calls["long"] += 1
        clock.now += 1 / 32

    spreads = {}
    times = bench._median_times({"short": short, "long": long}, repeats=3, spreads=spreads,
                                min_time=1 / 16)
    # two warm-up calls, then per repeat a batch lasting about min_time (at least one call)
    assert calls == {"short": 2 + 3 * 64, "long": 2 + 3 * 2}
    assert times == {"short": 1 / 1024, "long": 1 / 32}  # medians are per call
    assert spreads == {"short": 1.0, "long": 1.0}


def test_speed_row_from_given_times():
    spec = bench._problem("lstm", (3, 2, 4, 5))[0]
    times = {"fused": 0.002, "bptt": 0.004, "reference": 0.008, "torch": 0.003,
             "gemm": 0.001}
    row = bench._speed_row("lstm", (3, 2, 4, 5), True, spec, times)
    assert row["ms"] == {"fused": 2.0, "bptt": 4.0, "reference": 8.0, "torch": 3.0,
                         "gemm": 1.0}
    assert row["speedup_vs_torch"] == {"fused": 1.5, "bptt": 0.75, "reference": 0.375}
    assert row["fused_vs_reference"] == 4.0 and row["percent_of_gemm"] == 50.0
    flops = bench._flops(spec, (3, 2, 4, 5), True)
    assert row["fused_gflops"] == round(flops / 0.002 / 1e9, 1)


def test_bench_speed_rows_for_a_tiny_shape():
    lines = []
    rows = bench.bench_speed(["lstm", "gru"], [(3, 2, 4, 5)], repeats=1,
                             kernels=["fused", "bptt", "reference"], log=lines.append)
    assert [(r["cell"], r["mode"]) for r in rows] == [
        ("lstm", "train"), ("lstm", "infer"), ("gru", "train"), ("gru", "infer")]
    for row in rows:  # the rows' shape, never their speeds
        assert row["shape"] == [3, 2, 4, 5]
        assert set(row["ms"]) == {"fused", "bptt", "reference", "torch", "gemm"}
        assert set(row["speedup_vs_torch"]) == {"fused", "bptt", "reference"}
    assert len(lines) == 4 and all(line.startswith("| lstm |") or line.startswith("| gru |")
                                   for line in lines)


def test_bench_decode_rows():
    rows = bench.bench_decode(1, log=lambda line: None, input_size=8, hidden_size=8)
    assert [(r["cell"], r["batch"]) for r in rows] == [
        ("lstm-decode", 1), ("lstm-decode", 64), ("gru-decode", 1), ("gru-decode", 64)]
    for row in rows:
        assert set(row["us"]) == {"fused", "rnnkit_cell", "torch"}
        assert all(v > 0 for v in row["us"].values())


def test_bench_rejects_an_unknown_cell(capsys):
    assert bench.main(["--cells", "lstm,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown cells ['nope']" in err and "lstm-layernorm" in err


TINY_LM = {"num_layers": 1, "hidden_size": 8, "bptt": 3, "batch_size": 2, "vocab_size": 40,
           "dropout": 0.0}


def test_bench_lm_same_model_on_both_sides_and_the_rows_shape():
    from rnnkit import bench_lm
    lines = []
    rows = bench_lm.bench_lm({"tiny": TINY_LM}, ["full", "sampled", "adaptive"], repeats=1,
                             num_samples=5, min_time=0.001, log=lines.append)
    assert [(r["config"], r["softmax"]) for r in rows] == [
        ("tiny", "full"), ("tiny", "sampled"), ("tiny", "adaptive")]
    for row in rows:
        assert row["tokens_per_step"] == 6
        assert set(row) >= {"rnnkit", "torch", "ratio_min", "ratio_median"}
        assert set(row["rnnkit"]) == set(row["torch"]) == {
            "min_ms", "median_ms", "tokens_per_s", "first_loss"}
    # the same weights and batch give the same first loss with the same output layer
    for row in rows[0], rows[2]:
        assert abs(row["rnnkit"]["first_loss"] - row["torch"]["first_loss"]) < 1e-5
    assert len(lines) == 3 and all(line.startswith("| tiny |") for line in lines)


def test_bench_lm_command_prints_a_table_and_a_last_line_json(monkeypatch, capsys):
    import json

    import torch

    from rnnkit import bench_lm
    monkeypatch.setitem(bench_lm.LM_CONFIGS, "tiny", TINY_LM)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["lm", "--lm-configs", "tiny", "--softmax", "full,adaptive",
                           "--repeats", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-3].startswith("| tiny | full |") and out[-2].startswith("| tiny | adaptive |")
    result = json.loads(out[-1])
    assert result["bench"] == "lm" and result["threads"] == 1 and len(result["rows"]) == 2
    assert bench.main(["lm", "--softmax", "hierarchical"]) == 2
    assert "--softmax must be a comma-separated subset of full, sampled, adaptive" in \
        capsys.readouterr().err
