# Two commands do all the setup on a fresh machine:
#   make run   - install into .venv and run the exporter on the bundled example
#   make test  - install into .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CONFIG ?= config/example.toml

.PHONY: run test check lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/generate_samples.py --if-stale
	$(VENV)/bin/contact-cost-exporter --config.file $(CONFIG)

test: $(VENV)/.installed
	$(PY) -m pytest

check: $(VENV)/.installed
	$(VENV)/bin/contact-cost-exporter --config.file $(CONFIG) --config.check

bench: $(VENV)/.installed
	$(PY) bench/backfill.py

clean:
	rm -rf $(VENV) state build *.egg-info
