# Two commands do all set-up on a fresh machine:
#   make demo   venv -> install -> train the zoo digits model -> convert to 4 TFLite targets -> validate -> bench
#   make test   venv -> install -> full test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo-out
TARGETS := -t tflite:fp32 -t tflite:dynamic -t tflite:int8 -t tflite:fp16

.PHONY: demo test test-fast bench coverage zoo-seed venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: venv
	$(BIN)/edgekit convert digits-cnn $(TARGETS) -o $(OUT) --force
	$(BIN)/edgekit bench $(OUT) --runs 200

# pytest exits 5 when it collects no tests; make treats any non-zero exit as failure.
# pytest-xdist runs one worker per core, whole modules per worker (a module's fixtures are built once),
# in the order tests/conftest.py sorts them (heaviest first: --no-loadscope-reorder keeps it);
# tests/conftest.py builds the shared trained models and folders once for all workers.
JOBS ?= auto
XDIST := -n $(JOBS) --dist loadscope --no-loadscope-reorder
test: venv
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: venv
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

bench: venv
	$(BIN)/python benchmarks/tflite_precisions.py

# Every zoo model x every registered target, converted and validated -> docs/coverage.md (commit it).
# Trained zoo models are cached (~/.cache/edgekit or $$EDGEKIT_CACHE): a re-run only converts.
coverage: venv
	$(BIN)/python benchmarks/coverage.py -o docs/coverage.md

# The trained zoo the test suite's cache starts from (tests/data/zoo-seed, commit it): retrain after
# changing a zoo builder, trainer or the digits data code (tests/zoo/test_zoo_seed.py says when).
zoo-seed: venv
	$(BIN)/python -m tools.zoo_seed

clean:
	rm -rf $(VENV) $(OUT) build dist src/*.egg-info .pytest_cache
