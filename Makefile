# Two commands do all the setup on a fresh machine:
#   make run   - install into .venv and run the exporter on the bundled example
#   make test  - install into .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CONFIG ?= config/example.toml
ARGS   ?=
# `make run` generates live-looking sample exports (up to now) here, an ignored path, and
# points the example's two sources at them; config/samples/ stays as committed, so the
# tree is clean after a first run and the tests that compare those files still pass.
SAMPLES ?= state/samples
ifeq ($(CONFIG),config/example.toml)
RUN_ENV  = CONTACT_COST_SOURCES__PBX__PATH=$(SAMPLES)/Master.csv \
           CONTACT_COST_SOURCES__HELPDESK__PATH=$(SAMPLES)/tickets.csv
endif

.PHONY: run samples test check lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: samples
	$(RUN_ENV) $(VENV)/bin/contact-cost-exporter --config.file $(CONFIG) $(ARGS)

samples: $(VENV)/.installed
	$(PY) scripts/generate_samples.py --if-stale --out $(SAMPLES)

test: $(VENV)/.installed
	$(PY) -m pytest

check: $(VENV)/.installed
	$(VENV)/bin/contact-cost-exporter --config.file $(CONFIG) --config.check

bench: $(VENV)/.installed
	$(PY) bench/backfill.py

clean:
	rm -rf $(VENV) state build *.egg-info
