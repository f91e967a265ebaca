# Both targets create the virtualenv themselves on a fresh machine (Python 3.11, nothing else needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint image clean chromium

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	# TFX 1.16's packages declare Requires-Python < 3.11 but ship working cp311 wheels.
	$(PY) -m pip install --quiet --ignore-requires-python -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cxr demo $(DEMO_ARGS)

# Two workers (CI has two cores); tests/conftest.py's scheduler keeps each module, and the shared run's users, on one.
TEST_WORKERS ?= 2
test: $(STAMP) chromium
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (no pipeline runs, no subprocesses of cxr).
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow" -q $(PYTEST_ARGS)

# The review app's browser test drives Debian's chromium (Playwright never downloads a browser here). Installed
# once when missing, as root or with sudo; if that fails the browser test is skipped and says why.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  echo "installing Debian's chromium for the browser test"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	    || echo "could not install chromium: the browser test will be skipped"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The Kubeflow image (kubeflow/Dockerfile); needs a Docker engine. GPU=1 adds TensorFlow's CUDA libraries.
IMAGE ?= cxr-pipeline:latest
GPU ?= 0
image:
	@if command -v hadolint >/dev/null 2>&1; then hadolint kubeflow/Dockerfile; else echo "hadolint not installed: kubeflow/Dockerfile not linted"; fi
	docker build -f kubeflow/Dockerfile --build-arg GPU=$(GPU) -t $(IMAGE) .

clean:
	rm -rf $(VENV) runs build *.egg-info
