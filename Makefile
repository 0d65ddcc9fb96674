# Two commands do all the set-up on a fresh machine (each installs into .venv on first use):
#   make demo   - package and play the embedded sample clip (bbmr-demo: player/demo.py)
#   make test   - lint (ruff) and run the test suite: tests/unit and tests/e2e
#   make web    - the browser player's npm packages (bbmr-play --web; make test installs them too)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

WEB := player/web
WEB_STAMP := $(WEB)/node_modules/.package-lock.json

.PHONY: demo test lint install clean xvfb chromium web

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
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

# the browser player's libraries (hls.js, onnxruntime-web), pinned in player/web/package-lock.json, from the npm
# registry into player/web/node_modules (bbmr-play --web serves them from there); npm from Debian when missing
web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; } || \
	  { echo "npm missing (apt-get install npm): the browser player cannot be installed"; exit 1; }
	cd $(WEB) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) xvfb chromium web lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(WEB)/node_modules
