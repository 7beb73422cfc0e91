"""The planners Dora is compared with, and the comparison: throughput-first, even,
memory-proportional and single-device plans (``baseline_planners``), PipeEdge's throughput
objective solved exactly (``bottleneck``, ``pipeedge_plan``), and each against Dora's optimum
under the cost model (``versus_baselines``)."""
