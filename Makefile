# The two commands of the README: `make arena` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: arena test test-fast test-gpu lint clean

# The CPU wheel of torch, pinned for development and CI; the package itself asks for a range. The peer
# references (fla's naive ops, Hugging Face's models) are installed too, so that the parity tests run
# rather than skip.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,peers,hf]'
	touch $(STAMP)

arena: $(STAMP)
	$(VENV)/bin/trevo arena quick --out runs/arena --workers 2

# One test worker per core (pytest-xdist); pytest without `-n` runs serially.
test: $(STAMP)
	$(PY) -m ruff check trevo tests
	$(PY) -m pytest -n auto --dist worksteal

# The fast subset: everything but the training-to-quality and long fault-injection tests.
test-fast: $(STAMP)
	$(PY) -m ruff check trevo tests
	$(PY) -m pytest -n auto --dist worksteal -m "not slow"

# The GPU checks (tests/test_cuda.py, marked cuda: mixers against the CPU, the Triton kernels compiled for
# the device rather than interpreted, the quick arena on CUDA, resume bitwise, generation parity, FLOPs equal
# to the CPU count, mixed precision), on a machine with a CUDA device; PyPI's Linux torch wheel is a CUDA build.
test-gpu: $(STAMP)
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: torch sees no CUDA device')"
	TRITON_INTERPRET=0 $(PY) -m pytest -m cuda tests/test_cuda.py

lint: $(STAMP)
	$(PY) -m ruff check trevo tests

clean:
	rm -rf $(VENV) runs
