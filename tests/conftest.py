"""Test configuration: property tests draw the same examples on every run unless asked not to.

``HYPOTHESIS_PROFILE=explore make test`` draws fresh random examples (use it when changing the
cost model); the default profile is derandomised so CI is reproducible.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
