# Two entry points: `make demo` and `make test`. Each sets up everything it needs (idempotently):
# a virtual environment with PyTorch (a CPU build where there is no GPU), the package built with
# its C++ extension (and the CUDA one whenever nvcc is found), then runs the job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.genfast-deps

.PHONY: demo test build setup bench lint clean fuzz sanitize mutants

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# An explicit pin: with no torch installed, pip would choose a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q scikit-build-core pybind11 ninja cmake
	$(PIP) install -q triton numpy scipy scikit-learn safetensors tqdm Pillow pytest hypothesis diffusers transformers torchsde ruff
	touch $(STAMP)

setup: $(STAMP)

# Editable build; the lock serialises concurrent rebuilds of the shared build directory.
build: $(STAMP)
	flock /tmp/genfast-build.lock $(PIP) install -q --no-build-isolation -e .

demo: build
	$(VENV)/bin/genfast demo

test: build
	TRITON_INTERPRET=1 $(PY) -m pytest -q -ra tests

# The property-based fuzz tests (tests/ops/test_fuzz.py) with a large budget: every public op
# against its oracle, and bad inputs; `make test` runs the same tests with 50 examples each.
FUZZ_EXAMPLES ?= 2000
FUZZ_BACKENDS ?= cpu
fuzz: build
	GENFAST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GENFAST_FUZZ_BACKENDS=$(FUZZ_BACKENDS) TRITON_INTERPRET=1 \
		$(PY) -m pytest -q -p no:cacheprovider tests/ops/test_fuzz.py

# Mutation check of the suite (issue 14): each one-line fault in tools/mutants.py must fail a test.
mutants: build
	TRITON_INTERPRET=1 $(PY) tools/mutants.py

bench: build
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check genfast tests benchmarks tools

clean:
	rm -rf build dist *.egg-info
