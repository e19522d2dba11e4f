#!/usr/bin/env bash
# Train two methods on the embedded demo data with alignkit and compare them with every
# evaluation tool: held-out implicit reward, perplexity, BLEU, reward-model score, refusal
# rates, and a judge's win rate (each comparison asked in both orders).
#
#   scripts/compare_methods.sh [OUT] [METHOD_A] [METHOD_B]    (defaults: runs/compare dpo ulma)
#
# About 25 minutes on 2 CPU cores. Writes OUT/<method>/ (runs of `alignkit demo`, each with
# eval/report.json), OUT/rm/ (the reward model), OUT/judge/judge.json and OUT/report/report.md.
set -euo pipefail

OUT=${1:-runs/compare}
A=${2:-dpo}
B=${3:-ulma}
BIN=${ALIGNKIT:-alignkit}
export HF_HUB_OFFLINE=1
DATA=$(python -c "from alignkit.commands.demo import demo_file; print(demo_file('train.jsonl'))")
HELD=$(python -c "from alignkit.commands.demo import demo_file; print(demo_file('heldout_pairs.jsonl'))")

# a reward model for the `reward` metric: Bradley-Terry on the same training pairs
if [ ! -f "$OUT/rm/model/config.json" ]; then
    "$BIN" train-rm --data "$DATA" --eval-data "$HELD" --model default --output "$OUT/rm" \
        --lora --lora-preset ulma --lora-r 16 --lr 5e-4 --epochs 1 --batch-size 8 --max-length 128
fi

for METHOD in "$A" "$B"; do
    if [ ! -f "$OUT/$METHOD/demo_report.json" ]; then
        "$BIN" demo --method "$METHOD" --output "$OUT/$METHOD"
    fi
    "$BIN" eval --model "$OUT/$METHOD" --data "$HELD" --reward-model "$OUT/rm/model" \
        --num-prompts 0 --max-new-tokens 64 --output "$OUT/$METHOD/eval/report.json"
done

"$BIN" judge --a "$OUT/$A/eval/report.generations.jsonl" --b "$OUT/$B/eval/report.generations.jsonl" \
    --judge local:default --output "$OUT/judge"
"$BIN" compare "$OUT/$A" "$OUT/$B" --output "$OUT/report"
echo "report: $OUT/report/report.md   judge: $OUT/judge/judge.json"
