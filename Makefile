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
	$(VENV)/bin/poptrain run examples/noisy_digits.toml --storage sqlite:///runs/demo/demo.db --baseline
	$(VENV)/bin/poptrain report --storage sqlite:///runs/demo/demo.db --experiment noisy_digits --experiment noisy_digits-baseline -o runs/demo/report.html

# A failed run ends by naming each failing test with the tail of its output (.ci/failed_tests.py).
test: install browser docs
	@mkdir -p build
	$(PY) -m pytest -q --junitxml=build/test-results.xml -o junit_logging=all -o junit_log_passing_tests=false \
		|| { $(PY) .ci/failed_tests.py build/test-results.xml; exit 1; }

# The docs site (MkDocs): --strict, so a broken reference or link fails `make test` and CI.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The dashboard's browser test drives Debian's Chromium (never a downloaded browser).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) runs
