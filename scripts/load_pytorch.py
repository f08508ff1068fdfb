#!/usr/bin/env python3
"""Loads a cairn run directory into PyTorch and scores records with it — the interoperability check.

    /usr/bin/python3 scripts/load_pytorch.py RUN_DIR --texts records.jsonl   # {"prompt","response"} or {"text"}
    /usr/bin/python3 scripts/load_pytorch.py RUN_DIR --tokens ids.jsonl      # {"ids": [...]} already encoded

Prints one JSON object per record: {"reward": composite, "rewards": {head: value}}. The model is
scripts/cairn_torch.py (docs/model.md#architecture); weights load with load_state_dict(strict=True), so every name and
shape of model.safetensors is checked. Texts are rendered and encoded exactly as cairn does:
[BOS] + ids + [EOS], left-truncated to max_seq_len.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from cairn_torch import load_run, pad_batch  # noqa: E402


def render(rec):
    """docs/formats.md#rendering of a scoring record."""
    def msgs(m):
        names = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}
        return "".join(f"\n\n{names[x['role']]}: {x['content']}" for x in m)

    if "text" in rec and rec["text"] is not None:
        return rec["text"]
    prompt, resp = rec.get("prompt"), rec["response"]
    if isinstance(resp, list):
        return (msgs(prompt) if prompt else "") + msgs(resp)
    if isinstance(prompt, list):
        return msgs(prompt) + "\n\nAssistant: " + resp
    if prompt is None:
        return resp
    if prompt.startswith("\n\nHuman:"):
        return prompt + resp
    return "\n\nHuman: " + prompt + "\n\nAssistant: " + resp


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--texts")
    g.add_argument("--tokens")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, cfg = load_run(args.run_dir)
    T = cfg["max_seq_len"]
    seqs = []
    if args.texts:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=os.path.join(args.run_dir, "tokenizer.model"))
        for line in open(args.texts, encoding="utf-8"):
            if line.strip():
                ids = [cfg["bos_id"]] + sp.encode(render(json.loads(line))) + [cfg["eos_id"]]
                seqs.append(ids[-T:])
    else:
        for line in open(args.tokens, encoding="utf-8"):
            if line.strip():
                seqs.append(json.loads(line)["ids"][-T:])
    names = cfg.get("head_names", ["reward"])
    with torch.no_grad():
        for b in range(0, len(seqs), args.batch_size):
            ids, lengths = pad_batch(seqs[b : b + args.batch_size], cfg.get("pad_id", 0))
            r = model(ids, lengths)
            comp = model.composite(r)
            for i in range(r.shape[0]):
                print(json.dumps({"reward": float(comp[i]), "rewards": {n: float(v) for n, v in zip(names, r[i])}}))


if __name__ == "__main__":
    main()
