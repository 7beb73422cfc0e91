"""``python -m dora_rl.sim``: see :mod:`dora_rl.sim.cli`."""

from dora_rl.sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
