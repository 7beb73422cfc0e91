"""Controllers: anything with SB3's ``predict``; ``make(name, env)`` builds the baselines."""

from dora_rl.controllers.baselines import CONTROLLERS, Controller, make
from dora_rl.controllers.evaluate import evaluate, run_episode

__all__ = ["CONTROLLERS", "Controller", "evaluate", "make", "run_episode"]
