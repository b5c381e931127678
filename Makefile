# Set-up and everyday commands. Every target creates the virtual
# environment and installs the package first, so each one works on a fresh
# clone; the local OpenSearch node downloads itself on first start.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORPUS ?= ../shared/corpora/debian-packages.jsonl.gz
LIMIT ?= 5000
SHOW ?= python3-scipy,samtools,vlc
PORT ?= 9200
TEST_PORT ?= 9250

.PHONY: install demo test node-start node-stop bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

## demo: local node on PORT, LIMIT documents of CORPUS (LIMIT=0 loads all), backfill, results for SHOW
demo: install
	$(BIN)/os-mlt demo --corpus $(CORPUS) --limit $(LIMIT) --show $(SHOW) --port $(PORT)

## test: the whole suite against a real node (started on TEST_PORT if none runs there);
## the neural-search tests start their own node on 9280 (OS_MLT_TEST_NEURAL_PORT)
test: install
	OS_MLT_TEST_PORT=$(TEST_PORT) $(BIN)/python -m pytest

node-start: install
	$(BIN)/os-mlt node start --port $(PORT)

node-stop: install
	$(BIN)/os-mlt node stop --port $(PORT)

## bench: backfill throughput and hybrid_similar latency on CORPUS
bench: install
	$(BIN)/os-mlt bench backfill --corpus $(CORPUS) --limit $(LIMIT) --port $(PORT)
	$(BIN)/os-mlt bench query --corpus $(CORPUS) --limit $(LIMIT) --port $(PORT)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
