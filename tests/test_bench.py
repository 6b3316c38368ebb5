"""The benchmark's machinery (``rnnkit bench``): timing, rows, arguments. Speeds themselves
are never asserted here (benchmarks/ and RESULTS.md hold them)."""
import time

import pytest

from rnnkit import bench


def test_median_times_times_a_batch_of_calls_per_repeat():
    calls = {"short": 0, "long": 0}

    def short():
        calls["short"] += 1
        time.sleep(0.001)

    def long():
        calls["long"] += 1
        time.sleep(0.02)

    spreads = {}
    times = bench._median_times({"short": short, "long": long}, repeats=3, spreads=spreads,
                                min_time=0.01)
    # two warm-up calls, then per repeat a batch lasting about min_time (at least one call)
    assert calls["long"] == 2 + 3
    assert 2 + 3 * 3 <= calls["short"] <= 2 + 3 * 10
    # medians are per call
    assert 0.001 <= times["short"] < 0.01
    assert 0.02 <= times["long"] < 0.2
    assert set(spreads) == {"short", "long"} and all(v >= 1 for v in spreads.values())


def test_bench_speed_rows_for_a_tiny_shape():
    lines = []
    rows = bench.bench_speed(["lstm", "gru"], [(3, 2, 4, 5)], repeats=1,
                             kernels=["fused", "bptt", "reference"], log=lines.append)
    assert [(r["cell"], r["mode"]) for r in rows] == [
        ("lstm", "train"), ("lstm", "infer"), ("gru", "train"), ("gru", "infer")]
    for row in rows:
        assert row["shape"] == [3, 2, 4, 5]
        assert set(row["ms"]) == {"fused", "bptt", "reference", "torch", "gemm"}
        assert all(v > 0 for v in row["ms"].values())
        # (ms are rounded to 3 decimals: a few percent at this tiny shape)
        assert row["speedup_vs_torch"]["fused"] == pytest.approx(
            row["ms"]["torch"] / row["ms"]["fused"], rel=0.05)
        assert row["fused_gflops"] >= 0 and row["percent_of_gemm"] > 0
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
