"""Offline planning: Dora's partitioner, plan sets, composition, network scheduler, baselines."""
