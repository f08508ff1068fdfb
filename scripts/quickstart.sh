#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, convert the bundled AlpacaEval
# judgments to preference pairs, train a tokenizer and a tiny reward model (≈10 min on 2 cores),
# evaluate it on the held-out prompts and score a sample file. Everything lands in runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CAIRN_TARGETS=cairn bash scripts/build.sh
CAIRN=build/cairn
OUT=runs/quickstart
mkdir -p "$OUT"

echo "== 1. AlpacaEval judgments -> preference pairs"
$CAIRN pairs --from alpaca-eval --input data/alpaca-eval/train.jsonl.gz --output "$OUT/train.pairs.jsonl"
$CAIRN pairs --from alpaca-eval --input data/alpaca-eval/valid.jsonl.gz --output "$OUT/valid.pairs.jsonl"

echo "== 2. tokenizer (SentencePiece BPE)"
$CAIRN tokenizer train --input "$OUT/train.pairs.jsonl" --out "$OUT/tokenizer.model" --vocab-size 4096

echo "== 3. reward model (preset tiny)"
rm -rf "$OUT/model"
$CAIRN train --train "$OUT/train.pairs.jsonl" --valid "$OUT/valid.pairs.jsonl" --out "$OUT/model" \
  --tokenizer "$OUT/tokenizer.model" --preset tiny --epochs 2 --batch-pairs 16 --lr 5e-4 --eval-every 100 --seed 1

echo "== 4. evaluation on held-out prompts"
$CAIRN eval --model "$OUT/model" --pairs "$OUT/valid.pairs.jsonl"

echo "== 5. scoring"
$CAIRN score --model "$OUT/model" --input data/samples/score_sample.jsonl --output "$OUT/scored.jsonl"
head -c 600 "$OUT/scored.jsonl"; echo
echo "done: run directory $OUT/model, scores $OUT/scored.jsonl"
