#!/usr/bin/env bash
# The GPU suite (issue 15): mbench's CUDA path, checked and measured in one run of about 8 minutes.
#
#   OUT=/an/empty/folder bash bench/gpu_suite.sh                              # on a CUDA machine
#   OUT=/tmp/x MBENCH_GPU_SUITE_DEVICE=cpu bash bench/gpu_suite.sh           # dry run without a GPU
#
# Run from the repository root. Wheels of packages the machine lacks (pydantic, ftfy, ...) are
# installed from .whl/ into /tmp/site when that folder holds any; mbench is used from the source
# tree (PYTHONPATH). Steps, each under its own time limit and inside one overall budget
# (MBENCH_GPU_SUITE_BUDGET_S, default 470 s); a failing step never stops the others:
#   1. pytest-gpu     `pytest -m gpu`: CUDA against fp32 CPU for every plugin family, the reranker, the store
#   2. mini-compare   bench/gpu_mini_compare.py: `mbench run` of the mini benchmark on CUDA and on CPU
#   3. encode-bench   bench/gpu_encode_bench.py: items/s of a MiniLM-sized encoder and CLIP ViT-L/14
#   4. search-bench   bench/gpu_search_bench.py: exact search at the global pool's shape (if present)
# MBENCH_GPU_SUITE_STEPS="pytest-gpu encode-bench" runs only those steps (a rerun of what failed).
# Files in $OUT: gpu-suite.md (the summary), suite.log (all output), pytest-gpu.txt, gpu-mini.md,
# gpu-encode.md, gpu-search.md. In the dry run the CPU stands in for CUDA with tiny sizes (the
# search bench too). Exit status: 0 when every step passed.

set -u

if [ -z "${OUT:-}" ]; then
  echo "gpu_suite.sh: set OUT to the folder the results go to" >&2
  exit 2
fi
if [ ! -f pyproject.toml ] || [ ! -d mbench ]; then
  echo "gpu_suite.sh: run it from the repository root" >&2
  exit 2
fi
mkdir -p "$OUT"

DEVICE="${MBENCH_GPU_SUITE_DEVICE:-cuda}"
# The dry run on a small CPU machine (the CPU does the accelerator's work too) gets 5 times the time.
if [ "$DEVICE" = cpu ]; then SCALE=5; else SCALE=1; fi
BUDGET_S="${MBENCH_GPU_SUITE_BUDGET_S:-$((470 * SCALE))}"
SUITE_START=$(date +%s)
DEADLINE=$((SUITE_START + BUDGET_S))
STEPS="${MBENCH_GPU_SUITE_STEPS:-pytest-gpu mini-compare encode-bench search-bench}"
SUMMARY_ROWS=()
FAILED=0

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export MBENCH_CACHE=/tmp/mbench-gpu-suite-cache

# wanted NAME: whether step NAME is among the steps to run.
wanted() {
  case " $STEPS " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

# run_step NAME LIMIT_S COMMAND...: run COMMAND under `timeout` (at most LIMIT_S x SCALE, never
# past the overall budget) and record its exit status and wall time for the summary.
run_step() {
  local name=$1 limit=$(($2 * SCALE))
  shift 2
  if ! wanted "$name"; then
    echo "=== $name: skipped (not in MBENCH_GPU_SUITE_STEPS)"
    return
  fi
  local left=$((DEADLINE - $(date +%s)))
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then
    echo "=== $name: not run, the suite's time budget is spent"
    SUMMARY_ROWS+=("| $name | NOT RUN (budget spent) | - | \`$*\` |")
    FAILED=1
    return
  fi
  echo "=== $name (limit ${limit} s): $*"
  local start end status verdict
  start=$(date +%s.%N)
  timeout -k 15 "$limit" "$@"
  status=$?
  end=$(date +%s.%N)
  local wall
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  case $status in
    0) verdict="pass" ;;
    124|137) verdict="FAIL (killed at its ${limit} s limit)"; FAILED=1 ;;
    *) verdict="FAIL (exit $status)"; FAILED=1 ;;
  esac
  echo "=== $name: $verdict in ${wall} s"
  SUMMARY_ROWS+=("| $name | $verdict | $wall | \`$*\` |")
}

install_wheels() {
  export PYTHONPATH="$PWD"
  if ! compgen -G ".whl/*.whl" > /dev/null; then
    WHEELS="none in .whl/ (the installed packages are used)"
  elif python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then
    export PYTHONPATH="/tmp/site:$PWD"
    WHEELS="installed into /tmp/site: $(cd .whl && ls ./*.whl | sed 's|^\./||' | tr '\n' ' ')"
  else
    WHEELS="the install from .whl/ FAILED (see suite.log); the installed packages are used"
  fi
  echo "=== wheels: $WHEELS"
}

machine_facts() {
  echo "| fact | value |"
  echo "| --- | --- |"
  if command -v nvidia-smi > /dev/null; then
    echo "| GPU (nvidia-smi: name, driver, memory) | $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1) |"
  else
    echo "| GPU | none (no nvidia-smi) |"
  fi
  echo "| CPU cores | $(nproc) |"
  python3 - <<'EOF'
import importlib, platform, sys
rows = [("Python", f"{platform.python_version()} ({sys.executable})")]
try:
    import torch
    rows += [("torch", torch.__version__), ("CUDA (torch build)", str(torch.version.cuda)),
             ("CUDA device (torch)", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")]
except Exception as err:  # the facts table must come out even when torch does not import
    rows.append(("torch", f"import failed: {err}"))
for name in ("transformers", "sentence_transformers", "numpy", "pydantic", "ftfy", "pytest"):
    try:
        rows.append((name, importlib.import_module(name).__version__))
    except Exception as err:
        rows.append((name, f"not importable: {type(err).__name__}"))
for key, value in rows:
    print(f"| {key} | {value} |")
EOF
  if git rev-parse --short HEAD > /dev/null 2>&1; then
    echo "| git commit | $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)') |"
  else
    echo "| git commit | unknown (no git checkout here) |"
  fi
}

write_summary() {
  local total=$(( $(date +%s) - SUITE_START ))
  {
    echo "# GPU suite: mbench's CUDA path"
    echo
    echo "Command: \`OUT=\$OUT$( [ "$DEVICE" != cuda ] && echo " MBENCH_GPU_SUITE_DEVICE=$DEVICE")$( [ -n "${MBENCH_GPU_SUITE_STEPS:-}" ] && echo " MBENCH_GPU_SUITE_STEPS=\"$STEPS\"") bash bench/gpu_suite.sh\`, device \`$DEVICE\`, run $(date -u +%Y-%m-%dT%H:%M:%SZ), $total s in all (budget $BUDGET_S s, step limits x$SCALE)."
    echo
    echo "$FACTS"
    echo
    echo "Carried wheels: $WHEELS"
    echo
    echo "| step | result | wall s | command |"
    echo "| --- | --- | ---: | --- |"
    printf '%s\n' "${SUMMARY_ROWS[@]}"
    echo
    echo "Reports: pytest-gpu.txt, gpu-mini.md, gpu-encode.md, gpu-search.md; everything printed: suite.log."
    echo "BM25 is CPU-only (bm25s), so it has no CUDA check."
  } > "$OUT/gpu-suite.md"
  cat "$OUT/gpu-suite.md"
}

main() {
  echo "=== GPU suite on $DEVICE, budget $BUDGET_S s, output in $OUT"
  install_wheels
  FACTS=$(machine_facts)
  echo "$FACTS"

  local gpu_tests
  gpu_tests=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
  # Naming the device makes tests/test_gpu.py fail, not skip, where CUDA is not visible.
  run_step pytest-gpu 130 bash -c "set -o pipefail; MBENCH_GPU_TEST_DEVICE=$DEVICE python3 -m pytest -m gpu -v -rs -p no:cacheprovider --durations=15 $gpu_tests 2>&1 | tee '$OUT/pytest-gpu.txt'"

  run_step mini-compare 130 python3 bench/gpu_mini_compare.py --device "$DEVICE" --out "$OUT/gpu-mini.md"

  if [ "$DEVICE" = cpu ]; then
    run_step encode-bench 150 python3 bench/gpu_encode_bench.py --device cpu --size tiny --repeats 1 --num-workers 2 --out "$OUT/gpu-encode.md"
  else
    run_step encode-bench 110 python3 bench/gpu_encode_bench.py --device "$DEVICE" --out "$OUT/gpu-encode.md"
  fi

  if ! wanted search-bench; then
    echo "=== search-bench: skipped (not in MBENCH_GPU_SUITE_STEPS)"
  elif [ ! -f bench/gpu_search_bench.py ]; then
    echo "=== search-bench: bench/gpu_search_bench.py is not in this checkout"
    SUMMARY_ROWS+=("| search-bench | NOT RUN (bench/gpu_search_bench.py absent) | - | - |")
    FAILED=1
  elif [ "$DEVICE" = cpu ]; then
    run_step search-bench 60 python3 bench/gpu_search_bench.py --device cpu --pool-size 20000 --queries 64 --dims 64 --out "$OUT/gpu-search.md"
  else
    run_step search-bench 240 python3 bench/gpu_search_bench.py --out "$OUT/gpu-search.md"
  fi

  write_summary
  echo "=== files in $OUT:"
  ls -la "$OUT"
  return $FAILED
}

main 2>&1 | tee "$OUT/suite.log"
exit "${PIPESTATUS[0]}"
