"""Offline planning: the exact partitioner (:mod:`dora_rl.planner.exact`), plan sets
(``planset``), their composition at run time (``compose``), the network scheduler
(``scheduler``), the plan-set cache on disk (``disk``), figures (``plan_plots``) and the
baseline planners (:mod:`dora_rl.planner.baselines`)."""
