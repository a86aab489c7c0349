#!/usr/bin/env bash
# mixed_precision_experiment.sh MODEL TEXT OUT [REPORT.md]
# The automatic plan against uniform plans of the same budget, before and after identical
# fine-tuning. TEXT is split by bytes: the first third for calibration and fine-tuning, the last
# two thirds held out. Budgets: the bytes of uniform NF3 r16, and of uniform NF2 r16 (tighter).
# For each budget: `loftq plan auto` (calibrated), every uniform plan (int8/nf4/nf3/nf2 x r8-64)
# that fits, then one `loftq experiment --plan ...` over all of them (LoftQ init, held-out loss
# before and after fine-tuning), appended to REPORT.md; the allocator's fronts go to
# OUT/budget-*/front.json and, when loftq-studio is built, are drawn to PNG_DIR/mixed-front-*.png
# (PNG_DIR defaults to OUT; give docs/images to keep them beside the report).
set -euo pipefail
MODEL=$1; TEXT=$2; OUT=$3; REPORT=${4:-}
LOFTQ=${LOFTQ:-$(dirname "$0")/../build/bin/loftq}
STUDIO=${STUDIO:-$(dirname "$LOFTQ")/loftq-studio}
STEPS=${STEPS:-60}
PNG_DIR=${PNG_DIR:-$OUT}
mkdir -p "$OUT" "$PNG_DIR"
size=$(stat -c %s "$TEXT")
head -c $((size / 3)) "$TEXT" > "$OUT/train.txt"
tail -c $((size - size / 3)) "$TEXT" > "$OUT/heldout.txt"
budget_of() {  # bytes of a uniform plan
  "$LOFTQ" inspect "$MODEL" --quant "$1" --rank "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"]["total_bytes"])'
}
for ref in "nf3 16" "nf2 16"; do
  set -- $ref
  B=$(budget_of "$1" "$2")
  tag="budget-$1r$2"
  mkdir -p "$OUT/$tag"
  "$LOFTQ" plan auto "$MODEL" --budget "$B" --calib "$OUT/train.txt" -o "$OUT/$tag/auto.loftq.json" \
      --front "$OUT/$tag/front.json" --no-cache | tee "$OUT/$tag/auto.txt"
  if [[ -x "$STUDIO" ]]; then
    "$STUDIO" --front "$OUT/$tag/front.json" --front-png "$PNG_DIR/mixed-front-$tag.png" --size 900x560
  fi
  plans=(--plan "$OUT/$tag/auto.loftq.json")
  for q in int8 nf4 nf3 nf2; do
    for r in 8 16 32 64; do
      b=$(budget_of $q $r)
      if (( b <= B )); then
        "$LOFTQ" plan init "$MODEL" --quant $q --rank $r -o "$OUT/$tag/$q-r$r.loftq.json" > /dev/null
        plans+=(--plan "$OUT/$tag/$q-r$r.loftq.json")
      fi
    done
  done
  args=(experiment "$MODEL" --data "$OUT/train.txt" --eval-data "$OUT/heldout.txt" --out "$OUT/$tag/runs"
        --steps "$STEPS" --batch 8 --seq 128 --lr 1e-3 --eval-every "$STEPS" --eval-batches 16 "${plans[@]}")
  [[ -n "$REPORT" ]] && args+=(--report "$REPORT")
  "$LOFTQ" "${args[@]}"
done
