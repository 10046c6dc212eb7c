#!/usr/bin/env bash
# One short lease of a GPU, used fully: fine-tune casmtr-4c-lite while the CUDA extension is built and checked,
# then time the kernels and the matchers on a quiet GPU. Everything lands in $OUT (default out/gpu_session).
#
#   TRAIN_MIN=4 tools/gpu_session.sh [DATA.tar.xz]
#
# DATA.tar.xz (made by tools/pack_gpu_data.sh) holds a `shared/data/...` subset of ../shared/data for
# machines that cannot see ../shared; without it ../shared (or $CASMTR_SHARED) is used.
# Environment: TRAIN_MIN (0 skips training), TRAIN_CONFIG (default train_lite_gpu), TRAIN_INIT (a checkpoint to start
# from instead of the config's init), BENCH=0 skips timing, BENCH_OPS=0 skips the op benchmark, PYTHON (default python3),
# BENCH_PATHS (default: the four CUDA paths), CASMTR_CUDA_ARCHS (default: this GPU's compute capability).
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export CASMTR_CUDA_CACHE=${CASMTR_CUDA_CACHE:-/tmp/casmtr_cuda_cache}
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/session.log"; }

{ nvidia-smi || true; "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"; nvcc --version | tail -2; c++ --version | head -1; } \
  >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if [ -z "${CASMTR_CUDA_ARCHS:-}" ]; then
  CASMTR_CUDA_ARCHS=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')" \
    2>/dev/null || echo 90)
fi
export CASMTR_CUDA_ARCHS

if [ -n "${1:-}" ]; then
  mkdir -p /tmp/casmtr_data && tar xJf "$1" -C /tmp/casmtr_data && export CASMTR_SHARED=/tmp/casmtr_data/shared
  log "data unpacked to $CASMTR_SHARED: $(du -sh "$CASMTR_SHARED/data" | cut -f1)"
fi

TRAIN_MIN=${TRAIN_MIN:-4}
train_pid=""
if [ "$TRAIN_MIN" != "0" ]; then
  init=()
  [ -n "${TRAIN_INIT:-}" ] && init=(--init "$TRAIN_INIT")
  log "training ${TRAIN_CONFIG:-train_lite_gpu} for $TRAIN_MIN min (PyTorch ops path) ${init[*]}"
  CASMTR_OPS_BACKEND=torch timeout -s TERM -k 60 "$(awk "BEGIN{print int($TRAIN_MIN*60+120)}")" \
    "$PY" -m casmtr_ros.cli train "${TRAIN_CONFIG:-train_lite_gpu}" "${init[@]}" --out /tmp/casmtr_run \
    --minutes "$TRAIN_MIN" --no-progress --export "$OUT/casmtr-4c-lite.pt" >"$OUT/train.log" 2>&1 &
  train_pid=$!
fi

log "building the CUDA extension for sm_$CASMTR_CUDA_ARCHS"
MAX_JOBS=6 timeout 200 "$PY" -m casmtr_ros.ops.jit >"$OUT/cuda_build.log" 2>&1
log "build rc=$? ($(tail -1 "$OUT/cuda_build.log"))"
tests="test/ops/test_cuda_kernels.py test/ops/test_dispatch.py test/ops/test_torch_ops.py test/benchmark/test_ops_bench.py"
# shellcheck disable=SC2086
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib -ra" $tests \
  -k "not out_of_range and not refused" >"$OUT/cuda_tests.log" 2>&1
log "CUDA tests rc=$?: $(tail -1 "$OUT/cuda_tests.log")"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib -ra" test/matching/test_casmtr.py \
  -k profile >"$OUT/cuda_profile_tests.log" 2>&1
log "CUDA profile tests rc=$?: $(tail -1 "$OUT/cuda_profile_tests.log")"
# the tests where the extension must raise a clear error (kept apart: a crash there must not hide the others)
timeout 60 "$PY" -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib -ra" \
  test/ops/test_cuda_kernels.py -k "out_of_range or refused" >"$OUT/cuda_error_tests.log" 2>&1
rc=$?
log "CUDA error-path tests rc=$rc: $(tail -1 "$OUT/cuda_error_tests.log")"
if [ $rc -ne 0 ] && command -v cuda-gdb >/dev/null; then
  timeout 90 cuda-gdb -batch -ex run -ex bt --args "$PY" -m pytest -q -p no:cacheprovider -x \
    -o addopts="--import-mode=importlib" test/ops/test_cuda_kernels.py -k out_of_range >"$OUT/cuda_gdb.log" 2>&1
  log "backtrace: $(grep -m 12 -E '^#' "$OUT/cuda_gdb.log" | cut -c1-150 | tr '\n' '|')"
fi

if [ -n "$train_pid" ]; then
  wait "$train_pid"
  log "training rc=$?: $(grep -E '^(time budget|step |exported)' "$OUT/train.log" | tr '\n' ' ')"
  cp /tmp/casmtr_run/metrics.csv /tmp/casmtr_run/curves.png /tmp/casmtr_run/config.yaml "$OUT/" 2>/dev/null
fi

if [ "${BENCH:-1}" != "0" ]; then
  paths=${BENCH_PATHS:-cuda-torch cuda-kernels cuda-torch-fp16 cuda-kernels-fp16}
  if [ "${BENCH_OPS:-1}" != "0" ]; then
    log "bench ops"
    timeout 90 "$PY" -m casmtr_ros.cli bench ops --sizes 640x480 1280x960 --repeats 20 --paths cuda-torch cuda-kernels \
      --out "$OUT/bench" >"$OUT/bench_ops.log" 2>&1
    log "bench ops rc=$?"
  fi
  # shellcheck disable=SC2086
  timeout 150 "$PY" -m casmtr_ros.cli bench --matchers casmtr-4c-outdoor --sizes 640x480 832x832 --paths $paths \
    --warmup 3 --repeats 10 --budget 10 --timeout 45 --out "$OUT/bench_outdoor" >"$OUT/bench_outdoor.log" 2>&1
  log "bench outdoor rc=$?"
  # shellcheck disable=SC2086
  timeout 90 "$PY" -m casmtr_ros.cli bench --matchers casmtr-4c-indoor casmtr-4c-lite --sizes 640x480 \
    --paths ${BENCH_PATHS_SMALL:-cuda-torch-fp16 cuda-kernels-fp16} --warmup 3 --repeats 10 --budget 10 --timeout 45 \
    --out "$OUT/bench_others" >"$OUT/bench_others.log" 2>&1
  log "bench others rc=$?"
fi

tar czf "$OUT/results.tgz" -C "$OUT" --exclude=results.tgz --exclude='*.pt' . 2>/dev/null
log "done; results in $OUT"
