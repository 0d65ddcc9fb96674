# Two commands do all the set-up on a fresh machine (each installs into .venv on first use):
#   make demo   - package and play the embedded sample clip (bbmr-demo: player/demo.py)
#   make test   - lint (ruff) and run the test suite: tests/unit and tests/e2e
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean xvfb chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bbmr-demo --out bbmr-demo

# the player's window test needs an X server: Xvfb from Debian's packages (installed here when we are root)
xvfb:
	@command -v Xvfb >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb >/dev/null; } || \
	  echo "warning: Xvfb missing (apt-get install xvfb): the window test will fail"

# the live viewer page test opens the page in headless Chromium (Debian's package, installed here as root)
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: chromium missing (apt-get install chromium): the browser test will fail"

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) xvfb chromium lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
