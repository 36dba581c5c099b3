"""Benchmarks runnable with `python -m bench.<name>` from the repository root."""
