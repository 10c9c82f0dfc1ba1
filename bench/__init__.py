"""Benchmarks: every protocol against its peer and its physical bound."""
