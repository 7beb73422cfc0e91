# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install the pinned dependencies (CPU torch) on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint docs wheel-check bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dora_rl.describe envs/smart_home.yaml
	$(PY) -m dora_rl.plan --scenario envs/smart_home.yaml --json out/smart_home_plans.json --png out/smart_home_plans.png
	$(PY) -m dora_rl.train --scenario smart_home --timesteps 20000 --out out/checkpoints
	$(PY) -m dora_rl.bench --scenario smart_home --controllers ppo=checkpoints/smart_home/ppo_v1,static,throughput,dora,oracle --seeds 0 --episodes 1 --out out

test: $(STAMP)
	$(PY) -m pytest

# Learning and long checks (the `slow` marker), minutes each.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# The documentation site from mkdocs.yml and docs/, offline, warnings as errors (into a
# temporary folder; `$(VENV)/bin/mkdocs serve` shows it locally).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"

lint: $(STAMP)
	$(PY) -m ruff check dora_rl tests experiments
	$(PY) -m mypy dora_rl

# Build the wheel, install it into a fresh venv (reusing .venv's dependencies) and run the
# examples from a folder outside the repository.
wheel-check: $(STAMP)
	PY=$(abspath $(PY)) .ci/wheel-check

bench: $(STAMP)
	$(PY) experiments/bench_costmodel.py --update-results
	$(PY) experiments/bench_planner.py --update-results
	$(PY) experiments/bench_env.py --update-results
	$(PY) experiments/headline.py --update-results
	$(PY) experiments/bench_controllers.py --update-results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
