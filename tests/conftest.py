"""Test configuration: property tests draw the same examples on every run unless asked not to.

``HYPOTHESIS_PROFILE=explore make test`` draws fresh random examples (use it when changing the
cost model); the default profile is derandomised so CI is reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import settings
from prometheus_client.parser import text_string_to_metric_families

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture()
def prometheus_samples() -> Callable[[str], dict[str, float]]:
    """A parser of Prometheus text exposition (``prometheus_client``'s): sample name with its
    labels as written (``name{a="x",b="y"}``) to value; raises on malformed text."""

    def parse(text: str) -> dict[str, float]:
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                out[sample.name + (f"{{{labels}}}" if labels else "")] = float(sample.value)
        return out

    return parse
