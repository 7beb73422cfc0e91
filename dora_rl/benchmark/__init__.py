"""The controller benchmark behind ``python -m dora_rl.bench``.

- :mod:`~dora_rl.benchmark.controllers`: which controllers, each with its own environment;
- :mod:`~dora_rl.benchmark.episodes`: the same seeded episodes for every controller;
- :mod:`~dora_rl.benchmark.bench_tables`: per-seed rows, the Markdown table, CSV and JSON;
- :mod:`~dora_rl.benchmark.tblog`: one TensorBoard run per (scenario, controller, seed);
- :mod:`~dora_rl.benchmark.bench_plots`: the trade-off and episode figures.
"""
