# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo clean-venv

$(STAMP): requirements.txt constraints.txt setup.py scripts/setup_env.sh
	VENV=$(VENV) scripts/setup_env.sh
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check adaptive_fusion test bench

test: lint
	scripts/run_tests.sh

clean-venv:
	rm -rf $(VENV)
