#!/usr/bin/env bash
# The one prepared run on a lent GPU machine (issue 15, item 4), sized to end within 9 minutes
# (BUDGET, default 530 s, counted from the start): every stage's time limit is the smaller of its
# own and what is left of the budget, so a slow stage shortens the later ones instead of losing
# everything. Outputs (logs, tables, the updated RESULTS.md) go to $OUT (default /tmp/genfast-gpu).
#
#   bash benchmarks/gpu_check.sh [stage ...]
#   stages (default, in this order): env build tests tune bench sanitize
#
#   env       nvidia-smi, torch / Triton / nvcc versions, nproc
#   build     genfast with the CUDA module for the card (sm_$GENFAST_GPU_ARCH, default 90)
#   tests     the whole test suite on the GPU (CUDA backend, Triton compiled: TRITON_INTERPRET unset)
#   tune      `genfast tune` on the GPU: the table of measured winners per op and shape
#   bench     every benchmarks/bench_*.py (each with torch and auto rows; device ceilings measured)
#   sanitize  compute-sanitizer memcheck, racecheck, initcheck over every CUDA and Triton backend
#             value of every op (benchmarks/sanitize_ops.py: one call per value and shape; a pytest
#             run under the sanitizer would not fit the budget)
#
# Peers that the machine lacks (diffusers, normflows) are read from ./.devsite when present
# (pure-Python packages copied there beforehand, ignored by git; pass it in `carry`):
#   echo /.devsite/ >> .git/info/exclude; mkdir -p .devsite
#   SP=.venv/lib/python3.11/site-packages; for p in diffusers normflows importlib_metadata; do
#     cp -r $SP/$p $SP/$p-*.dist-info .devsite/; done; find .devsite -name __pycache__ -prune -exec rm -rf {} +
# Figures from the H100 machine (2026-11-26): build 85-90 s; tests/ops + opcheck about 120 s with
# 4 workers; the benchmarks 20-100 s each.
set -u
OUT=${OUT:-/tmp/genfast-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
unset TRITON_INTERPRET
[ -d .devsite ] && export PYTHONPATH="$PWD/.devsite${PYTHONPATH:+:$PYTHONPATH}"
# the tuner's cache of this run, returned with the logs
export GENFAST_CACHE_DIR="$OUT/tune-cache"
T0=$(date +%s)
BUDGET=${BUDGET:-530}
stamp() { echo "== $(($(date +%s) - T0)) s: $*" | tee -a "$OUT/stages.txt"; }
# limit WANT: the smaller of WANT seconds and what is left of the budget (0: skip the stage)
limit() {
  local left=$((BUDGET - ($(date +%s) - T0)))
  if [ "$left" -lt 15 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
STAGES=${*:-env build tests tune bench sanitize}
ARCH=${GENFAST_GPU_ARCH:-90}
XDIST=${GENFAST_XDIST:-$(($(nproc) > 12 ? 12 : $(nproc)))}
CS=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}

for stage in $STAGES; do
  case $stage in
  env)
    stamp env
    { nvidia-smi; $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'triton', triton.__version__, torch.cuda.get_device_name())"; nvcc --version | tail -2; nproc; } >"$OUT/env.txt" 2>&1
    tail -4 "$OUT/env.txt"
    ;;
  build)
    t=$(limit 180); [ "$t" = 0 ] && { stamp "build skipped: budget spent"; continue; }
    stamp "build (sm_$ARCH), limit $t s"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) GENFAST_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH" \
      timeout "$t" $PY -m pip install --no-build-isolation --no-deps -v -e . >"$OUT/build.log" 2>&1 ||
      { stamp "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
    $PY -c "import genfast.ops as O; print('backends', O.backends())" 2>&1 | tee -a "$OUT/stages.txt"
    ;;
  tests)
    # one run of everything (tests/ops, opcheck, the tuner, models, samplers incl. the CUDA-graph
    # capture test); no -x: every failure is wanted
    t=$(limit 200); [ "$t" = 0 ] && { stamp "tests skipped: budget spent"; continue; }
    stamp "tests: whole suite on the GPU, $XDIST workers, limit $t s"
    timeout "$t" $PY -m pytest -q -ra -n "$XDIST" -p no:cacheprovider --timeout 150 tests >"$OUT/test_all.log" 2>&1
    echo "rc=$?" >>"$OUT/test_all.log"
    grep -E "^(FAILED|ERROR)|passed|failed|rc=" "$OUT/test_all.log" | tail -40
    ;;
  tune)
    t=$(limit 60); [ "$t" = 0 ] && { stamp "tune skipped: budget spent"; continue; }
    stamp "genfast tune (float32, bfloat16), limit $t s"
    timeout "$t" $PY -c "import sys; from genfast.cli import main; sys.exit(main(sys.argv[1:]))" \
      tune --device cuda --dtypes float32,bfloat16 >"$OUT/tune.md" 2>&1
    echo "rc=$?" >>"$OUT/tune.md"
    cat "$OUT/tune.md"
    ;;
  bench)
    # the targets first; GENFAST_BENCHES overrides
    for b in ${GENFAST_BENCHES:-gibbs vq sampling_step invconv samplers rbm_sklearn}; do
      t=$(limit 60); [ "$t" = 0 ] && { stamp "bench $b skipped: budget spent"; continue; }
      stamp "bench $b, limit $t s"
      GENFAST_BENCH_ROUNDS=${GENFAST_BENCH_ROUNDS:-3} timeout "$t" $PY "benchmarks/bench_$b.py" >>"$OUT/bench.log" 2>&1 ||
        echo "bench $b rc=$?" | tee -a "$OUT/bench.log"
      cp benchmarks/RESULTS.md "$OUT/RESULTS.md"  # after each: a later timeout keeps what was measured
    done
    ;;
  sanitize)
    for tool in memcheck racecheck initcheck; do
      t=$(limit 45); [ "$t" = 0 ] && { stamp "sanitize $tool skipped: budget spent"; continue; }
      stamp "compute-sanitizer --tool $tool, limit $t s"
      # racecheck and initcheck are slower: float32 only there
      q=$([ "$tool" = memcheck ] || echo --quick)
      timeout "$t" "$CS" --tool "$tool" --error-exitcode 3 --target-processes all \
        $PY benchmarks/sanitize_ops.py $q >"$OUT/sanitize_$tool.log" 2>&1
      echo "rc=$?" >>"$OUT/sanitize_$tool.log"
      grep -E "ERROR SUMMARY|sanitize_ops:|FAILED|rc=" "$OUT/sanitize_$tool.log" | tail -8
    done
    ;;
  *)
    echo "unknown stage $stage (env build tests tune bench sanitize)"
    ;;
  esac
done
stamp done
