"""Benchmarks of the Job Manager against raw baselines measured in the same run.

Run ``python -m bench`` (or ``bench/run.py``) from the repository root: it starts its own
Kafka broker, runs every benchmark, writes ``bench/results/latest.json`` and regenerates
``docs/PERFORMANCE.md`` from it. See ``python -m bench --help``.
"""
