#!/usr/bin/env python3
"""Makes the bundled data slice from the full AlpacaEval annotation files (../shared/data).

Deterministic: a seeded random sample of whole judgment records, train from train and valid from
valid (the upstream split is by prompt, so no prompt is shared). Records are written unmodified.

    python3 scripts/make_bundled_data.py ../shared/data/alpaca-eval-annotations data
"""
import gzip
import json
import os
import random
import sys

src, out = sys.argv[1], sys.argv[2]
sizes = {"train": 3600, "valid": 900}
for split, n in sizes.items():
    with gzip.open(os.path.join(src, f"{split}.jsonl.gz"), "rt", encoding="utf-8") as f:
        lines = f.readlines()
    rng = random.Random(20261122)
    keep = sorted(rng.sample(range(len(lines)), n))
    path = os.path.join(out, "alpaca-eval", f"{split}.jsonl.gz")
    with gzip.GzipFile(path, "wb", mtime=0) as g:
        for i in keep:
            g.write(lines[i].encode("utf-8"))
    print(f"{path}: {n} of {len(lines)} judgments, {os.path.getsize(path) / 1e6:.2f} MB")

# A scoring sample: prompt/response records from the valid split (both outputs of 150 judgments).
with gzip.open(os.path.join(src, "valid.jsonl.gz"), "rt", encoding="utf-8") as f:
    lines = f.readlines()
rng = random.Random(7)
path = os.path.join(out, "samples", "score_sample.jsonl")
with open(path, "w", encoding="utf-8") as g:
    for i in sorted(rng.sample(range(len(lines)), 150)):
        d = json.loads(lines[i])
        for k in ("output_1", "output_2"):
            if d[k].strip():
                g.write(json.dumps({"prompt": d["instruction"], "response": d[k], "generator": d[f"generator_{k[-1]}"]}) + "\n")
print(f"{path}: {sum(1 for _ in open(path))} records")
