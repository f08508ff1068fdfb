#!/usr/bin/env python3
"""cairn's CPU attention vs PyTorch's on the same shapes and thread count, forward+backward, fp32.

Runs `cairn bench attention --json --backward` (each implementation validated before it is timed),
then PyTorch: the manual formulation (QKᵀ·scale, causal mask, softmax, PV; autograd backward) and
scaled_dot_product_attention where the installed torch has it (1.13 does not). Rounds alternate
between the two; medians are compared. FLOPs: FlashAttention convention.

    /usr/bin/python3 bench/compare_torch_attention.py --cairn build/cairn --batch 4 --heads 8 --seq-len 1024 --head-dim 64
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import time

import torch


def torch_attention_round(B, H, N, d, causal, impl, repeats):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(B, H, N, d, generator=g).mul_(2).sub_(1).requires_grad_() for _ in range(3))
    dout = torch.rand(B, H, N, d, generator=g) * 2 - 1
    mask = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1) if causal else None

    def run():
        if impl == "sdpa":
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            if causal:
                s = s.masked_fill(mask, float("-inf"))
            o = torch.softmax(s, dim=-1) @ v
        o.backward(dout)
        q.grad = k.grad = v.grad = None

    run()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cairn", default="build/cairn")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--no-causal", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    causal = not a.no_causal
    impls = ["manual"] + (["sdpa"] if hasattr(torch.nn.functional, "scaled_dot_product_attention") else [])
    cmd = [a.cairn, "bench", "attention", "--json", "--backward", "--impl", "gemm,flash", "--batch", str(a.batch),
           "--heads", str(a.heads), "--seq-len", str(a.seq_len), "--head-dim", str(a.head_dim),
           "--causal=" + ("true" if causal else "false"), "--repeats", str(a.repeats), "--threads", str(a.threads)]
    cairn_ms = {"gemm": [], "flash": []}
    torch_ms = {i: [] for i in impls}
    sgemm = 0.0
    for r in range(a.rounds):
        j = json.loads(subprocess.run(cmd + (["--no-sgemm"] if r else []), check=True, capture_output=True, text=True).stdout)
        sgemm = sgemm or j["sgemm_gflops"]
        for row in j["rows"]:
            if not row.get("valid", False):
                raise SystemExit(f"cairn {row['impl']} failed validation: {row}")
            cairn_ms[row["impl"]].append(row["fwd_bwd_ms"])
        for i in impls:
            torch_ms[i].append(1e3 * torch_attention_round(a.batch, a.heads, a.seq_len, a.head_dim, causal, i, a.repeats))
    flops = 3.5 * 4.0 * a.batch * a.heads * a.seq_len ** 2 * a.head_dim * (0.5 if causal else 1.0)
    med = {f"cairn_{k}": statistics.median(v) for k, v in cairn_ms.items()}
    med.update({f"torch_{k}": statistics.median(v) for k, v in torch_ms.items()})
    out = {"shape": vars(a) | {"causal": causal}, "torch": torch.__version__, "sgemm_gflops": sgemm, "fwd_bwd_ms": med,
           "gflops": {k: flops / (v / 1e3) / 1e9 for k, v in med.items()},
           "ratio_flash_vs_torch_manual": med["torch_manual"] / med["cairn_flash"]}
    if a.json:
        print(json.dumps(out))
        return
    print(f"attention fwd+bwd, B {a.batch} H {a.heads} N {a.seq_len} d {a.head_dim} {'causal' if causal else 'full'}, "
          f"{a.threads} threads, torch {torch.__version__}, median of {a.rounds} alternating rounds")
    for k, v in med.items():
        frac = f"  ({100 * out['gflops'][k] / sgemm:.0f}% of SGEMM {sgemm:.0f})" if sgemm else ""
        print(f"  {k:14s} {v:9.1f} ms  {out['gflops'][k]:7.1f} GFLOP/s{frac}")
    print(f"  cairn flash vs torch manual: {out['ratio_flash_vs_torch_manual']:.2f}x faster")


if __name__ == "__main__":
    main()
