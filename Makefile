# fabric_ray: two commands on a fresh machine.
#   make demo   create .venv if missing, install, run the end-to-end demo on embedded defaults
#   make test   create .venv if missing, install, run the whole test suite (unit, then integration)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-unit test-integration bench install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fabric demo

test: $(STAMP)
	$(PY) -m pytest --doctest-modules fabric_ray tests/unit tests/integration

test-unit: $(STAMP)
	$(PY) -m pytest --doctest-modules fabric_ray tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

bench: $(STAMP)
	$(PY) -m bench spine

clean:
	rm -rf $(VENV) .fabric .pytest_cache
