# `make test` sets up .venv on first use (pinned packages, this package, vision_msgs), then lints
# and runs the tests. The set-up re-runs only when a pin or a set-up file changes.
VENV ?= .venv
STAMP := $(VENV)/.installed
SETUP_INPUTS := requirements.txt constraints.txt setup.py setup.cfg \
	scripts/setup_env.sh scripts/build_vision_msgs.sh \
	$(shell find scripts/third_party_interfaces -type f)

.PHONY: setup test lint demo clean-venv

$(STAMP): $(SETUP_INPUTS)
	VENV=$(VENV) scripts/setup_env.sh
	touch $@

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	VENV=$(VENV) scripts/run_tests.sh

# the README's first command: simulated sensors + fusion_node through config/scenarios/demo.yaml
# with the shipped model and layer controller (adaptive_fusion/models/), a live table,
# runs/demo/timeline.png
demo: $(STAMP)
	$(VENV)/bin/adaptive-fusion demo --policy controller

clean-venv:
	rm -rf $(VENV)
