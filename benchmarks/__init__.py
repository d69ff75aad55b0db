"""Benchmarks of ingest, query and answer speed (`make bench`, `make bench-small`).

Each ``bench_*.py`` module has ``run(...) -> dict`` (used by the tests at a tiny size) and a
``main()`` for ``python -m benchmarks.bench_NAME --size small|full``; results go to
``benchmarks/results/NAME.json`` with a Markdown table printed on stdout.
"""
