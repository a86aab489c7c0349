#!/usr/bin/env bash
# run.sh BUILD SECONDS WORKDIR [TARGET...]: runs libFuzzer targets (BUILD/bin/fuzz_<target>, built
# with -DLOFTQ_FUZZ=ON -DLOFTQ_SANITIZE=ON) for SECONDS each, one after the other, starting from
# the committed seeds (fuzz/corpus/<target>, read only) and growing a working corpus in
# WORKDIR/<target>/corpus. Crashes, leaks, timeouts and out-of-memory inputs are saved as
# WORKDIR/<target>/crash-* etc.; the log with libFuzzer's final statistics is WORKDIR/<target>.log.
# No TARGET: all of them. Exits 1 when any target found something.
# FUZZ_JOBS=N runs N targets at a time instead (e.g. a long run in the background, under nice);
# FUZZ_ARGS adds libFuzzer flags (a long run: "-fork=1 -ignore_crashes=1" goes on after a finding).
set -uo pipefail
build=$(realpath "$1"); seconds=$2; work=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for f in "$here"/corpus/*/; do targets+=("$(basename "$f")"); done
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
sym=$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | head -1 || true)
[[ -n $sym ]] && export ASAN_SYMBOLIZER_PATH=$sym

one() {
  local t=$1 dir=$work/$1
  mkdir -p "$dir/corpus"
  # -timeout: one input may take at most 10 s (a hang); -rss_limit_mb: 1 GiB (memory that grows with
  # a claimed size, not the input); -max_len: inputs up to 1 MiB (deep nesting, long names).
  "$build/bin/fuzz_$t" "$dir/corpus" "$here/corpus/$t" -dict="$here/json.dict" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=1024 -max_len=1048576 -print_final_stats=1 -artifact_prefix="$dir/" \
    ${FUZZ_ARGS:-} >"$work/$t.log" 2>&1
  local rc=$?
  local stats
  stats=$(grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$work/$t.log" | sed 's/stat:://' | tr -s ' \n' '  ')
  local cov
  cov=$(grep -Eo "cov: [0-9]+ ft: [0-9]+" "$work/$t.log" | tail -1)
  if [[ $rc -eq 0 ]]; then
    echo "fuzz $t: ok, ${seconds}s, $cov, $stats"
  else
    echo "fuzz $t: FOUND SOMETHING (exit $rc); see $work/$t.log and $dir/" >&2
    grep -E "FINDING|ERROR: |SUMMARY" "$work/$t.log" | head -5 >&2
  fi
  return $rc
}

mkdir -p "$work"
fail=0
if [[ ${FUZZ_JOBS:-1} -gt 1 ]]; then
  pids=()
  for t in "${targets[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $FUZZ_JOBS ]]; do wait -n || fail=1; done
    one "$t" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
else
  for t in "${targets[@]}"; do one "$t" || fail=1; done
fi
exit $fail
