"""Benchmark scripts that print tables (results go in RESULTS.md, never in test asserts)."""
