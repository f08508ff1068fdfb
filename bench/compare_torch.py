#!/usr/bin/env python3
"""cairn vs PyTorch: one training step of the same reward model, batch and thread count.

Alternates --rounds rounds of `cairn bench train --json` and the same model (scripts/cairn_torch.py)
in PyTorch eager fp32 (forward of chosen + rejected, Bradley–Terry loss, backward, global-norm clip,
AdamW), so machine drift hits both alike; prints the median tokens/s of each and the ratio.
--lengths uniform draws sequence lengths in [seq/4, seq] (as real data): cairn packs them, PyTorch
pads to the longest; tokens/s counts real tokens only for both.

    /usr/bin/python3 bench/compare_torch.py --cairn build/cairn --preset small --batch-pairs 8 --seq-len 256
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cairn_torch import RewardModel  # noqa: E402

PRESETS = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=4, d_ff=512, max_seq_len=256),
    "small": dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_seq_len=512),
    "base": dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048, max_seq_len=512),
}


def torch_setup(args, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = dict(PRESETS[args.preset], vocab_size=args.vocab_size, n_heads_out=1)
    cfg["max_seq_len"] = max(cfg["max_seq_len"], args.seq_len)
    model = RewardModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    B, T = 2 * args.batch_pairs, args.seq_len
    ids = torch.randint(3, args.vocab_size, (B, T))
    if args.lengths == "uniform":
        lengths = torch.randint(T // 4, T + 1, (B,), generator=torch.Generator().manual_seed(1))
        ids = ids[:, : int(lengths.max())]
    else:
        lengths = torch.full((B,), T, dtype=torch.long)

    def step():
        opt.zero_grad(set_to_none=True)
        r = model(ids, lengths)[:, 0]
        loss = -F.logsigmoid(r[0::2] - r[1::2]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()

    def round_():
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        return {"ms_per_step_median": med * 1e3, "tokens_per_s": float(lengths.sum()) / med}

    return round_


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cairn", default="build/cairn")
    p.add_argument("--preset", default="small", choices=PRESETS)
    p.add_argument("--batch-pairs", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=3, help="alternating cairn/PyTorch rounds (medians compared)")
    p.add_argument("--lengths", default="fixed", choices=["fixed", "uniform"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    cmd = [args.cairn, "bench", "train", "--json", "--preset", args.preset, "--batch-pairs", str(args.batch_pairs),
           "--seq-len", str(args.seq_len), "--vocab-size", str(args.vocab_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--lengths", args.lengths]
    torch_round = torch_setup(args, args.threads)
    c_rounds, t_rounds = [], []
    for r in range(args.rounds):
        c_rounds.append(json.loads(subprocess.run(cmd + (["--no-sgemm"] if r else []), check=True,
                                                  capture_output=True, text=True).stdout))
        t_rounds.append(torch_round())
    cairn = dict(c_rounds[0])
    cairn["tokens_per_s"] = statistics.median(c["tokens_per_s"] for c in c_rounds)
    cairn["ms_per_step_median"] = statistics.median(c["ms_per_step_median"] for c in c_rounds)
    cairn["gflops"] = cairn["gflop_per_step"] / (cairn["ms_per_step_median"] / 1e3)
    cairn["fraction_of_sgemm"] = cairn["gflops"] / cairn["sgemm_gflops"] if cairn["sgemm_gflops"] else 0.0
    pt = {"tokens_per_s": statistics.median(t["tokens_per_s"] for t in t_rounds),
          "ms_per_step_median": statistics.median(t["ms_per_step_median"] for t in t_rounds),
          "torch": torch.__version__, "threads": torch.get_num_threads()}
    ratio = cairn["tokens_per_s"] / pt["tokens_per_s"]
    per_round = [c["tokens_per_s"] / t["tokens_per_s"] for c, t in zip(c_rounds, t_rounds)]
    out = {"cairn": cairn, "pytorch": pt, "ratio_tokens_per_s": ratio, "ratio_per_round": per_round,
           "shape": {"preset": args.preset, "batch_pairs": args.batch_pairs, "seq_len": args.seq_len,
                     "lengths": args.lengths, "threads": args.threads, "rounds": args.rounds}}
    if args.json:
        print(json.dumps(out))
        return
    print(f"preset {args.preset}, {args.batch_pairs} pairs x seq {args.seq_len} ({args.lengths} lengths), "
          f"{args.threads} threads, median of {args.rounds} alternating rounds")
    print(f"  cairn    {cairn['tokens_per_s']:10.0f} tokens/s  {cairn['ms_per_step_median']:8.1f} ms/step (median)"
          f"  {cairn['gflops']:.1f} GFLOP/s executed = {100 * cairn['fraction_of_sgemm']:.0f}% of SGEMM {cairn['sgemm_gflops']:.0f}")
    print(f"  PyTorch  {pt['tokens_per_s']:10.0f} tokens/s  {pt['ms_per_step_median']:8.1f} ms/step (median)"
          f"  torch {pt['torch']}")
    print(f"  ratio cairn/PyTorch: {ratio:.2f}x  (per round: {', '.join(f'{r:.2f}' for r in per_round)})")


if __name__ == "__main__":
    main()
