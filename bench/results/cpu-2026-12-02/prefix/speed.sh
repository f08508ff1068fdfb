#!/bin/bash
# usage: speed.sh BIN TRAIN MAXLEN TAG STEPS REPS
BIN=$1; TRAIN=$2; ML=$3; TAG=$4; STEPS=${5:-40}; REPS=${6:-2}
cd /tmp/ps
for rep in $(seq $REPS); do
for mode in shared unshared; do
  d=run_${TAG}_${mode}_$rep; rm -rf $d
  flag=""; [ $mode = unshared ] && flag=--no-prefix-sharing
  /usr/bin/time -f "%e s %M KB" $BIN train --train $TRAIN --out $d --tokenizer tok.model --preset tiny --max-seq-len $ML \
    --steps $STEPS --batch-pairs 16 --log-every 10 --save-every 100000 --threads ${THREADS:-2} $flag 2> $d.log
  python3 - $d $mode $TAG <<'P'
import json,sys,statistics
d,mode,tag=sys.argv[1:]
m=[json.loads(l) for l in open(d+"/metrics.jsonl")]
pp=[x["pairs_per_s"] for x in m[1:]]; tp=[x["tokens_per_s"] for x in m[1:]]
print(f"{tag} {mode}: pairs/s median {statistics.median(pp):.2f} (windows {['%.1f'%x for x in pp]}), sequence tokens/s {statistics.median(tp):.0f}, final loss {m[-1]['loss']:.4f}")
P
  grep -h "prefix sharing\|truncated" $d.log; tail -1 $d.log
done; done
