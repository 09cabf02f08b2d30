"""End-to-end benchmarks of kdist: ``python -m benchmarks.run`` (see run.py)."""
