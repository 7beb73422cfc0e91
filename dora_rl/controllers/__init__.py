"""Controllers: anything with SB3's ``predict``; ``make(name, env)`` builds the baselines,
``load(run_dir)`` a trained one."""

from dora_rl.controllers.baselines import CONTROLLERS, Controller, make
from dora_rl.controllers.checkpoint import CheckpointError
from dora_rl.controllers.evaluation import evaluate, run_episode, run_episode_infos
from dora_rl.controllers.learned import LearnedController, load

__all__ = ["CONTROLLERS", "CheckpointError", "Controller", "LearnedController", "evaluate",
           "load", "make", "run_episode", "run_episode_infos"]
