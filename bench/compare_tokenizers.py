#!/usr/bin/env python3
"""Byte-level BPE encoding speed: cairn against Hugging Face tokenizers, on the same texts, same run.

  .venv/bin/python bench/compare_tokenizers.py --pairs train.pairs.jsonl --tokenizer RUN/tokenizer.json \
      [--pairs-limit 20000] [--rounds 5] [--bench build/bench_tokenizer]

The texts are what train/eval/score encode for a pair: prompt + response, once for chosen and once
for rejected (the chat template adds a few tokens only). Hugging Face is timed as a single-thread loop
of encode() and as encode_batch() (its Rust thread pool, all cores); cairn through bench_tokenizer with
1 thread and all cores. Medians of --rounds, rounds interleaved (HF, cairn, HF, cairn...) so that
machine noise hits both alike; each round starts from freshly loaded tokenizers (cold word caches),
as a train/eval/score run does. Prints one JSON object; ratios are cairn's speed over HF's.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def texts_of(pairs_path, limit):
    texts = []
    with open(pairs_path, encoding="utf-8") as f:
        for line in f:
            if len(texts) >= 2 * limit:
                break
            rec = json.loads(line)
            prompt = rec.get("prompt", "")
            for side in ("chosen", "rejected"):
                resp = rec[side]
                if isinstance(resp, list):  # a conversation: its contents in order
                    resp = "\n".join(m.get("content", "") for m in resp)
                texts.append(prompt + "\n\n" + resp if prompt else resp)
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--tokenizer", required=True, help="a tokenizer.json (a cairn run directory has one)")
    ap.add_argument("--pairs-limit", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_tokenizer"))
    a = ap.parse_args()

    from tokenizers import Tokenizer
    import tokenizers

    texts = texts_of(a.pairs, a.pairs_limit)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    threads = os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        tpath = os.path.join(tmp, "texts.jsonl")
        with open(tpath, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps(t) + "\n")

        hf_loop, hf_batch, c1, cn = [], [], [], []
        hf_tokens = cairn_tokens = None
        for _ in range(a.rounds):
            hf = Tokenizer.from_file(a.tokenizer)  # fresh each round, as cairn's (word caches cold)
            t0 = time.perf_counter()
            n = sum(len(hf.encode(t, add_special_tokens=False).ids) for t in texts)
            hf_loop.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            enc = hf.encode_batch(texts, add_special_tokens=False)
            hf_batch.append(time.perf_counter() - t0)
            assert n == sum(len(e.ids) for e in enc)
            hf_tokens = n
            out = subprocess.run([a.bench, "--tokenizer", a.tokenizer, "--texts", tpath, "--rounds", "1",
                                  "--threads", str(threads)], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout)
            cairn_tokens = r["tokens"]
            c1.append(r["threads_1"]["cold"]["seconds"])
            cn.append(r["threads_%d" % threads]["cold"]["seconds"])

    med = statistics.median
    mbs = lambda secs: nbytes / med(secs) / 1e6
    result = {
        "bench": "tokenizer_compare",
        "tokenizers_version": tokenizers.__version__,
        "texts": len(texts), "bytes": nbytes, "threads": threads, "rounds": a.rounds,
        "tokens_hf": hf_tokens, "tokens_cairn": cairn_tokens, "same_token_count": hf_tokens == cairn_tokens,
        "mb_per_s": {"hf_loop_1": mbs(hf_loop), "hf_encode_batch": mbs(hf_batch),
                     "cairn_1": mbs(c1), "cairn_%d" % threads: mbs(cn)},
        "seconds": {"hf_loop_1": hf_loop, "hf_encode_batch": hf_batch, "cairn_1": c1, "cairn_%d" % threads: cn},
        "ratio_1_thread": med(hf_loop) / med(c1),
        "ratio_all_threads": med(hf_batch) / med(cn),
    }
    print(json.dumps(result))
    return 0 if result["same_token_count"] else 1


if __name__ == "__main__":
    sys.exit(main())
