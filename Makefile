# The two commands a user needs: `make demo` and `make test`. Each creates .venv and installs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[torch,dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf runs/demo
	mkdir -p runs/demo
	$(VENV)/bin/poptrain run examples/mlp_digits.toml --storage sqlite:///runs/demo/mlp_digits.db --baseline
	$(VENV)/bin/poptrain report --storage sqlite:///runs/demo/mlp_digits.db --experiment mlp_digits -o runs/demo/report.html

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
