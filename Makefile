# Two entry points: `make demo` and `make test`. Each sets up everything it needs (idempotently):
# a virtual environment with PyTorch (a CPU build where there is no GPU), the package built with
# its C++ extension (and the CUDA one whenever nvcc is found), then runs the job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.genfast-deps

.PHONY: demo test build setup bench lint clean fuzz sanitize tsan mutants

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# An explicit pin: with no torch installed, pip would choose a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q scikit-build-core pybind11 ninja cmake
	# The peers the tests compare with step for step are pinned to the releases genfast was checked
	# against (vector-quantize-pytorch 1.34 changed its EMA arithmetic; a new release: bump and rerun).
	$(PIP) install -q triton numpy scipy scikit-learn safetensors tqdm Pillow pytest hypothesis diffusers==0.42.1 transformers torchsde ruff vector-quantize-pytorch==1.34.1 torchmetrics
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
# Then the other property-based tests (genfast.testing's strategies, marker `property`) with
# hypothesis's random search, 1000 examples each.
fuzz: build
	GENFAST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GENFAST_FUZZ_BACKENDS=$(FUZZ_BACKENDS) TRITON_INTERPRET=1 \
		$(PY) -m pytest -q -p no:cacheprovider tests/ops/test_fuzz.py
	GENFAST_HYPOTHESIS_PROFILE=fuzz TRITON_INTERPRET=1 $(PY) -m pytest -q -ra -p no:cacheprovider \
		-m property --ignore=tests/ops/test_fuzz.py tests

# Sanitizer runs of the C++ CPU module (issue 14, item 5), each in its own build folder. The
# module is built with -fsanitize=... and -fno-sanitize-recover=all (every report aborts, so the
# run fails), and loaded by tools/run_with_module.py in place of the regular build. PyTorch and
# Python are not instrumented, so the sanitizer runtime must be loaded before anything else:
# LD_PRELOAD lists libasan first, then libstdc++ (so that ASan's interposed operator new/delete
# and the C++ runtime the module links resolve to one copy); detect_leaks=0 because CPython
# keeps its allocations until exit. `make tsan`: ThreadSanitizer over the multi-threaded tests
# (four Python threads calling every op; OpenMP at one thread, since libgomp is not instrumented).
SANITIZE ?= address,undefined,float-cast-overflow
SAN_BUILD := build-sanitize
TSAN_BUILD := build-tsan
SAN_CMAKE = $(VENV)/bin/cmake -S . -G Ninja -DGENFAST_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
	-DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir)
SAN_TESTS ?= tests/ops
sanitize: build
	$(SAN_CMAKE) -B $(SAN_BUILD) -DGENFAST_SANITIZE=$(SANITIZE) > /dev/null
	$(VENV)/bin/cmake --build $(SAN_BUILD) --target _C
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	GENFAST_FUZZ_EXAMPLES=$${GENFAST_FUZZ_EXAMPLES:-200} TRITON_INTERPRET=1 \
		$(PY) tools/run_with_module.py $(SAN_BUILD) -q -p no:cacheprovider -k "not triton" $(SAN_TESTS)

tsan: build
	$(SAN_CMAKE) -B $(TSAN_BUILD) -DGENFAST_SANITIZE=thread > /dev/null
	$(VENV)/bin/cmake --build $(TSAN_BUILD) --target _C
	LD_PRELOAD="$$(gcc -print-file-name=libtsan.so):$$(gcc -print-file-name=libstdc++.so)" \
	TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0 OMP_NUM_THREADS=1 TRITON_INTERPRET=1 \
		$(PY) tools/run_with_module.py $(TSAN_BUILD) -q -p no:cacheprovider \
		tests/ops/test_concurrency.py tests/ops/test_gibbs_cpu_cache.py

# Mutation check of the suite (issue 14): each one-line fault in tools/mutants.py must fail a test.
mutants: build
	TRITON_INTERPRET=1 $(PY) tools/mutants.py

bench: build
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check genfast tests benchmarks tools

clean:
	rm -rf build dist *.egg-info build-sanitize build-tsan
