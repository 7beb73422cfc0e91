"""``python -m dora_rl.sim``: see :mod:`dora_rl.sim.command`."""

from dora_rl.sim.command import main

if __name__ == "__main__":
    raise SystemExit(main())
