#!/usr/bin/env python3
"""cairn vs PyTorch: one training step of the same reward model, batch and thread count.

Runs `cairn bench train --json`, then the same model (scripts/cairn_torch.py) in PyTorch eager fp32
(forward of chosen + rejected, Bradley–Terry loss, backward, global-norm clip, AdamW) and prints
tokens/s of both and the ratio cairn/PyTorch. Medians over --steps timed steps after --warmup.

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


def torch_bench(args, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = dict(PRESETS[args.preset], vocab_size=args.vocab_size, n_heads_out=1)
    cfg["max_seq_len"] = max(cfg["max_seq_len"], args.seq_len)
    model = RewardModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    B, T = 2 * args.batch_pairs, args.seq_len
    ids = torch.randint(3, args.vocab_size, (B, T))
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
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"ms_per_step_median": med * 1e3, "tokens_per_s": B * T / med, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "blas": torch.__config__.show().count("OpenBLAS") and "OpenBLAS" or "?"}


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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    cmd = [args.cairn, "bench", "train", "--json", "--preset", args.preset, "--batch-pairs", str(args.batch_pairs),
           "--seq-len", str(args.seq_len), "--vocab-size", str(args.vocab_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    cairn = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    pt = torch_bench(args, args.threads)
    ratio = cairn["tokens_per_s"] / pt["tokens_per_s"]
    out = {"cairn": cairn, "pytorch": pt, "ratio_tokens_per_s": ratio,
           "shape": {"preset": args.preset, "batch_pairs": args.batch_pairs, "seq_len": args.seq_len,
                     "threads": args.threads}}
    if args.json:
        print(json.dumps(out))
        return
    print(f"preset {args.preset}, {args.batch_pairs} pairs x seq {args.seq_len}, {args.threads} threads")
    print(f"  cairn    {cairn['tokens_per_s']:10.0f} tokens/s  {cairn['ms_per_step_median']:8.1f} ms/step (median)"
          f"  {cairn['gflops']:.1f} GFLOP/s = {100 * cairn['fraction_of_sgemm']:.0f}% of SGEMM {cairn['sgemm_gflops']:.0f}")
    print(f"  PyTorch  {pt['tokens_per_s']:10.0f} tokens/s  {pt['ms_per_step_median']:8.1f} ms/step (median)"
          f"  torch {pt['torch']}")
    print(f"  ratio cairn/PyTorch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
