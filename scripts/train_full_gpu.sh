#!/usr/bin/env bash
# Trains the two reward models of the closing notes on a GPU from the FULL shared AlpacaEval
# judgments: a plain one and a length-debiased one (--length-head), concurrently, then evaluates
# both on the held-out prompts and times `cairn score` on 10k records.
#   [LENGTH_LAMBDA=1.0] bash scripts/train_full_gpu.sh CAIRN DATA_DIR OUT_DIR [EPOCHS]
# DATA_DIR holds train.pairs.jsonl, valid.pairs.jsonl (from `cairn pairs --from alpaca-eval` on
# ../shared/data/alpaca-eval-annotations) and tok8k.model (`cairn tokenizer train --vocab-size 8192`).
set -uo pipefail
CAIRN=$1 DATA=$2 OUT=$3 EPOCHS=${4:-2}
mkdir -p "$OUT"
common=(--device cuda --train "$DATA/train.pairs.jsonl" --valid "$DATA/valid.pairs.jsonl" --tokenizer "$DATA/tok8k.model"
        --preset base --max-seq-len 1024 --epochs "$EPOCHS" --batch-pairs 32 --lr 3e-4 --eval-every 100000
        --eval-batch-pairs 64 --seed 1)
# SIGINT at the time limit makes cairn save a checkpoint and stop (exit 130); eval then uses it
timeout -s INT "${TRAIN_LIMIT:-420}" "$CAIRN" train "${common[@]}" --out "$OUT/plain" > "$OUT/plain.log" 2>&1 &
timeout -s INT "${TRAIN_LIMIT:-420}" "$CAIRN" train "${common[@]}" --out "$OUT/debiased" --length-head \
  --length-lambda "${LENGTH_LAMBDA:-1.0}" > "$OUT/debiased.log" 2>&1 &
wait
tail -n 3 "$OUT/plain.log" "$OUT/debiased.log"
for m in plain debiased; do
  "$CAIRN" eval --device cuda --model "$OUT/$m" --pairs "$DATA/valid.pairs.jsonl" --batch-pairs 64 | tee "$OUT/$m.eval.txt"
  "$CAIRN" eval --device cuda --model "$OUT/$m" --pairs "$DATA/valid.pairs.jsonl" --batch-pairs 64 --json > "$OUT/$m.eval.json"
  cp "$OUT/$m/metrics.jsonl" "$OUT/$m.metrics.jsonl"
done
# scoring throughput: 10k {"prompt","response"} records from the valid pairs
python3 - "$DATA/valid.pairs.jsonl" "$OUT/score_in.jsonl" <<'PY'
import json, sys
n = 0
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        p = json.loads(line)
        for side in ("chosen", "rejected"):
            if n < 10000:
                out.write(json.dumps({"prompt": p["prompt"], "response": p[side]}) + "\n")
                n += 1
PY
/usr/bin/time -v "$CAIRN" score --device cuda --model "$OUT/plain" --input "$OUT/score_in.jsonl" \
  --output "$OUT/scored.jsonl" --batch-size 256 2>&1 | grep -E "records|tokens|Elapsed|Maximum resident" | tee "$OUT/score.txt"
