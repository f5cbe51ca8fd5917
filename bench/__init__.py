"""Benchmarks: each module runs real servers and prints one table (``python -m bench.<module>``)."""
