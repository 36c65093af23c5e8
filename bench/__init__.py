"""Benchmarks and the synthetic crowds they, the tests and the offline example share (bench/synthetic.py)."""
