#!/usr/bin/env python3
"""Builds an HH-RLHF-style multi-turn preference set from explicit-prompt pairs (for the
shared-prefix benchmark, docs/model.md#prefix-sharing).

Each output record is an implicit-prompt pair {"chosen": transcript, "rejected": transcript,
"label"}: the transcript is "\\n\\nHuman: … \\n\\nAssistant: …" over 1 + K turns, where the K earlier
turns are other pairs' prompts with their chosen answers (cut to --turn-chars characters at a word
boundary) and the last turn is the pair's own prompt with its chosen or rejected answer (cut to
--answer-chars). The two transcripts of a pair differ only in the last assistant turn, as in
HH-RLHF. K is uniform in [--min-turns, --max-turns]; everything is seeded. The defaults mimic
HH-RLHF's shape (a few turns of short answers, the last answer about a fifth of the transcript);
the output's own statistics are printed, say them with any figure measured on it.

usage: make_multiturn.py PAIRS.jsonl OUT.jsonl [--seed 1] [--min-turns 1] [--max-turns 4]
       [--turn-chars 400] [--answer-chars 400]
"""
import argparse
import json
import random


def cut(text, n):
    if len(text) <= n:
        return text
    t = text[:n]
    return t[: t.rfind(" ")] if " " in t else t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-turns", type=int, default=1)
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--turn-chars", type=int, default=400)
    ap.add_argument("--answer-chars", type=int, default=400)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pairs = [json.loads(line) for line in open(a.pairs, encoding="utf-8") if line.strip()]
    n_turns = chars = last = 0
    with open(a.out, "w", encoding="utf-8") as out:
        for p in pairs:
            k = rng.randint(a.min_turns, a.max_turns)
            history = ""
            for q in rng.sample(pairs, k):
                history += "\n\nHuman: " + q["prompt"].strip() + "\n\nAssistant: " + cut(q["chosen"].strip(), a.turn_chars)
            head = history + "\n\nHuman: " + p["prompt"].strip() + "\n\nAssistant: "
            rec = {"chosen": head + cut(p["chosen"].strip(), a.answer_chars),
                   "rejected": head + cut(p["rejected"].strip(), a.answer_chars)}
            if "label" in p:
                rec["label"] = p["label"]
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n_turns += k + 1
            chars += len(rec["chosen"]) + len(rec["rejected"])
            last += len(rec["chosen"]) + len(rec["rejected"]) - 2 * len(head)
    n = max(1, len(pairs))
    print(f"{len(pairs)} pairs -> {a.out}: {n_turns / n:.2f} turns per transcript, {chars / (2 * n):.0f} characters, "
          f"the last answer {100 * last / max(1, chars):.0f}% of them")


if __name__ == "__main__":
    main()
