# The two commands a user needs: `make demo` and `make test`. Each creates .venv and installs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test docs install browser clean

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

test: install browser docs
	$(PY) -m pytest -q

# The docs site (MkDocs): --strict, so a broken reference or link fails `make test` and CI.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The dashboard's browser test drives Debian's Chromium (never a downloaded browser).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) runs
