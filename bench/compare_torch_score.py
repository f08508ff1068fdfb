#!/usr/bin/env python3
"""cairn score vs transformers: offline scoring of real (prompt, response) texts with a pretrained
backbone's reward model (SmolLM2-135M by default), same weights, texts, batch size and threads, fp32 on
the CPU.

One run does it all: a 1-step `cairn train --init MODEL --chat-template plain` makes a reward-model run
directory, `cairn export` writes it as a Hugging Face model, and the texts (prompt + response of the
first pairs of --pairs that fit --max-seq-len) are scored --rounds times, interleaved:
  - cairn: `cairn score` (its own timer: reading, tokenizing, forward, writing; not the model load);
  - transformers, batches in input order (padded to the longest of each batch, as a plain loop does);
  - transformers, batches of texts sorted by length (the padding a careful user avoids).
Both sides tokenize inside the timed loop. The rewards are checked against each other (max |Δ|).
Prints one JSON object: medians of records/s and of real tokens/s, ratios cairn over transformers.

    .venv/bin/python bench/compare_torch_score.py --cairn build/cairn --pairs train.pairs.jsonl
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import transformers


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cairn", default="build/cairn")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/cairn/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--pairs", required=True, help="JSONL pairs with prompt and chosen (cairn pairs writes them)")
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--attention", default="auto", help="transformers attention: sdpa|eager|auto (sdpa where torch has it)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        seed_pairs = os.path.join(tmp, "seed.jsonl")
        with open(a.pairs, encoding="utf-8") as f, open(seed_pairs, "w", encoding="utf-8") as o:
            for _, line in zip(range(8), f):
                o.write(line)
        rundir, hfdir = os.path.join(tmp, "run"), os.path.join(tmp, "hf")
        run([a.cairn, "train", "--init", a.model, "--train", seed_pairs, "--out", rundir, "--steps", "1",
             "--batch-pairs", "2", "--max-seq-len", str(a.max_seq_len), "--chat-template", "plain", "--threads",
             str(a.threads)])
        run([a.cairn, "export", "--model", rundir, "--out", hfdir])
        tok = AutoTokenizer.from_pretrained(hfdir)
        if a.attention == "auto":
            a.attention = "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "eager"
        dtype = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
        model = AutoModelForSequenceClassification.from_pretrained(hfdir, attn_implementation=a.attention, **dtype)
        model.eval()

        texts = []
        with open(a.pairs, encoding="utf-8") as f:
            for line in f:
                if len(texts) >= a.records:
                    break
                r = json.loads(line)
                if not isinstance(r.get("prompt"), str) or not isinstance(r.get("chosen"), str):
                    continue
                t = r["prompt"] + "\n\n" + r["chosen"]
                if len(tok(t).input_ids) <= a.max_seq_len:
                    texts.append(t)
        records = os.path.join(tmp, "records.jsonl")
        with open(records, "w", encoding="utf-8") as o:
            for t in texts:
                o.write(json.dumps({"text": t}) + "\n")
        lengths = [len(tok(t).input_ids) for t in texts]
        real_tokens = sum(lengths)
        order_sorted = sorted(range(len(texts)), key=lambda i: lengths[i])
        bs = a.batch_size

        def hf_pass(order):
            out = [None] * len(texts)
            padded = 0
            t0 = time.perf_counter()
            with torch.no_grad():
                for s in range(0, len(order), bs):
                    idx = order[s:s + bs]
                    enc = tok([texts[i] for i in idx], padding=True, return_tensors="pt")
                    padded += enc.input_ids.numel()
                    logits = model(**enc).logits[:, 0]
                    for i, v in zip(idx, logits.tolist()):
                        out[i] = v
            return time.perf_counter() - t0, out, padded

        scored = os.path.join(tmp, "scored.jsonl")
        secs = {"cairn": [], "hf_input_order": [], "hf_sorted": []}
        padded = {}
        cairn_tokens = None
        for _ in range(a.rounds):
            p = run([a.cairn, "score", "--model", rundir, "--input", records, "--output", scored, "--batch-size",
                     str(bs), "--threads", str(a.threads)])
            m = re.search(r"scored (\d+) records \((\d+) tokens\) in [0-9.]+s: [0-9.]+ records/s, ([0-9.]+) tokens/s",
                          p.stderr)
            if not m:
                sys.exit("cannot read cairn score's summary:\n" + p.stderr)
            cairn_tokens = int(m.group(2))
            secs["cairn"].append(cairn_tokens / float(m.group(3)))  # its tokens/s has more digits than its seconds
            for name, order in (("hf_input_order", list(range(len(texts)))), ("hf_sorted", order_sorted)):
                s, hf_rewards, padded[name] = hf_pass(order)
                secs[name].append(s)
        with open(scored, encoding="utf-8") as f:
            cairn_rewards = [json.loads(line)["reward"] for line in f]

    med = {k: statistics.median(v) for k, v in secs.items()}
    diff = max(abs(x - y) for x, y in zip(cairn_rewards, hf_rewards))
    out = {
        "bench": "score_pretrained_vs_transformers", "model": a.model, "records": len(texts), "batch_size": bs,
        "max_seq_len": a.max_seq_len, "threads": a.threads, "rounds": a.rounds, "torch_attention": a.attention,
        "tokens": real_tokens, "tokens_cairn": cairn_tokens, "same_tokens": cairn_tokens == real_tokens,
        "padded_tokens": padded, "max_abs_reward_diff": diff,
        "reward_spread": max(hf_rewards) - min(hf_rewards),
        "seconds": secs,
        "records_per_s": {k: len(texts) / v for k, v in med.items()},
        "tokens_per_s": {k: real_tokens / v for k, v in med.items()},
        "ratio_vs_hf_input_order": med["hf_input_order"] / med["cairn"],
        "ratio_vs_hf_sorted": med["hf_sorted"] / med["cairn"],
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
    }
    print(json.dumps(out))
    return 0 if out["same_tokens"] else 1


if __name__ == "__main__":
    sys.exit(main())
