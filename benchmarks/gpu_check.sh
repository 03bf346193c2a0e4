#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see benchmarks/RESULTS.md for what it produced):
# build genfast with the CUDA module for the card, run the test suite on the GPU (the CUDA and
# compiled Triton backends against the reference), run the benchmarks, and leave logs and the
# updated RESULTS.md in $OUT (default /tmp/genfast-gpu).
#
#   bash benchmarks/gpu_check.sh [stage ...]     stages: env build samplers ops bench rest (default: all)
#
# Peers that the machine lacks (diffusers, normflows) are read from ./.devsite when present
# (pure-Python packages copied there beforehand, ~31 MB, ignored by git; pass it in `carry`):
#   echo /.devsite/ >> .git/info/exclude; mkdir -p .devsite
#   SP=.venv/lib/python3.11/site-packages; for p in diffusers normflows importlib_metadata; do
#     cp -r $SP/$p $SP/$p-*.dist-info .devsite/; done; find .devsite -name __pycache__ -prune -exec rm -rf {} +
# Each stage has its own time limit, so one hanging stage does not take the others' results
# with it. On the H100 machine: build 85-90 s; the first full run took 258 s, the second (a larger
# invconv shape, 5 rounds) passed 380 s inside the invconv benchmark (now 3 rounds, no CPU warm-up).
set -u
OUT=${OUT:-/tmp/genfast-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -d .devsite ] && export PYTHONPATH="$PWD/.devsite${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)
stamp() { echo "== $(($(date +%s) - T0)) s: $*" | tee -a "$OUT/stages.txt"; }
STAGES=${*:-env build samplers ops bench rest}
ARCH=${GENFAST_GPU_ARCH:-90}
XDIST=${GENFAST_XDIST:-4}  # the lent H100 machine showed nproc = 2

for stage in $STAGES; do
  case $stage in
  env)
    stamp env
    { nvidia-smi; $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'triton', triton.__version__, torch.cuda.get_device_name())"; nvcc --version | tail -2; nproc; } >"$OUT/env.txt" 2>&1
    tail -4 "$OUT/env.txt"
    ;;
  build)
    stamp "build (sm_$ARCH)"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) GENFAST_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH" \
      timeout 400 $PY -m pip install --no-build-isolation --no-deps -v -e . >"$OUT/build.log" 2>&1 ||
      { stamp "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
    $PY -c "import genfast.ops as O; print('backends', O.backends())" 2>&1 | tee -a "$OUT/stages.txt"
    ;;
  ops)
    stamp "tests: ops and opcheck on the GPU"
    timeout 300 $PY -m pytest -q -ra -n "$XDIST" -p no:cacheprovider --timeout 240 tests/ops tests/test_opcheck.py \
      >"$OUT/test_ops.log" 2>&1
    echo "rc=$?" >>"$OUT/test_ops.log"
    grep -E "^(FAILED|ERROR)|passed|failed|rc=" "$OUT/test_ops.log" | tail -40
    ;;
  samplers)
    # issue 12's GPU targets: a 20-step loop of every scheduler with no host sync and captured in
    # one CUDA graph, then the step benchmarks (each op at 64x4x128x128 vs copy bandwidth)
    stamp "tests: samplers (CUDA graph, sync debug)"
    timeout 300 $PY -m pytest -q -ra -p no:cacheprovider --timeout 240 tests/samplers/test_cuda_graph.py \
      tests/samplers/test_cuda.py >"$OUT/test_samplers.log" 2>&1
    echo "rc=$?" >>"$OUT/test_samplers.log"
    grep -E "^(FAILED|ERROR)|passed|failed|rc=" "$OUT/test_samplers.log" | tail -20
    ;;
  bench)
    # the open issues' benchmarks first (samplers: issue 12); GENFAST_BENCHES overrides
    for b in ${GENFAST_BENCHES:-samplers sampling_step gibbs invconv vq}; do
      stamp "bench $b"
      GENFAST_BENCH_ROUNDS=${GENFAST_BENCH_ROUNDS:-3} timeout 200 $PY "benchmarks/bench_$b.py" >>"$OUT/bench.log" 2>&1 ||
        echo "bench $b rc=$?" | tee -a "$OUT/bench.log"
      cp benchmarks/RESULTS.md "$OUT/RESULTS.md"  # after each: a later timeout keeps what was measured
    done
    ;;
  rest)
    stamp "tests: the rest of the suite"
    timeout 400 $PY -m pytest -q -ra -n "$XDIST" -p no:cacheprovider --timeout 300 tests --ignore=tests/ops \
      --ignore=tests/test_opcheck.py >"$OUT/test_rest.log" 2>&1
    echo "rc=$?" >>"$OUT/test_rest.log"
    grep -E "^(FAILED|ERROR)|passed|failed|rc=" "$OUT/test_rest.log" | tail -40
    ;;
  esac
done
stamp done
