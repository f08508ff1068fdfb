#!/usr/bin/env python3
"""cairn vs PyTorch on one GPU: attention kernels and a whole training step, one script, one run.

attention  `cairn bench attention --device cuda --json` (bf16, causal, FlashAttention FLOP convention,
           every cairn result validated against its naive reference first) beside
           torch.nn.functional.scaled_dot_product_attention restricted to the flash backend, same
           shapes, dtype and memory layout ([B, N, H, d] viewed as [B, H, N, d]); forward and
           forward+backward, CUDA-event medians; ratio cairn / SDPA in TFLOP/s.
train      `cairn bench train --device cuda --json` beside the same model (scripts/cairn_torch.py) in
           PyTorch eager with bf16 autocast, SDPA attention and fused AdamW; same preset, batch and
           lengths; ratio of tokens/s (medians).

    python3 bench/compare_torch_cuda.py --cairn build/cairn [--seq-lens 1024,2048,...] [--head-dims 64,128]
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

PRESETS = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=4, d_ff=512, max_seq_len=256),
    "small": dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_seq_len=512),
    "base": dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048, max_seq_len=512),
}


def cuda_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def sdpa_times(B, H, N, d, causal, warmup, reps):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator(device="cuda").manual_seed(0)
    def mk():
        return (torch.rand(B, N, H, d, device="cuda", generator=g, dtype=torch.float32) * 2 - 1).to(torch.bfloat16)
    q, k, v, do = mk(), mk(), mk(), mk()
    q, k, v = (t.transpose(1, 2).requires_grad_() for t in (q, k, v))
    do = do.transpose(1, 2)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fwd = cuda_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), warmup, reps)

        def fb():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            o.backward(do)
        fwd_bwd = cuda_ms(fb, warmup, reps)
    return fwd, fwd_bwd


def compare_attention(args):
    cmd = [args.cairn, "bench", "attention", "--device", "cuda", "--json", "--backward", "--dtype", "bf16",
           "--seq-len", args.seq_lens, "--head-dim", args.head_dims, "--tokens", str(args.tokens),
           "--model-dim", str(args.model_dim), "--repeats", str(args.reps), "--warmup", str(args.warmup),
           "--causal=" + ("true" if args.causal else "false")]
    c = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    rows, sdpa = [], {}
    for r in c["rows"]:
        if not r["impl"].startswith("flash"):
            continue
        B, H, N, d = r["batch"], r["heads"], r["seq_len"], r["head_dim"]
        flops = 4.0 * B * H * N * N * d * (0.5 if args.causal else 1.0)
        if (B, H, N, d) not in sdpa:  # one SDPA measurement per shape, shared by the cairn variants
            sdpa[(B, H, N, d)] = sdpa_times(B, H, N, d, bool(args.causal), args.warmup, args.reps)
        t_f, t_fb = sdpa[(B, H, N, d)]
        row = dict(impl=r["impl"], B=B, H=H, N=N, d=d, valid=r["valid"], err_out=r["err_out"],
                   err_grad=max(r["err_dq"], r["err_dk"], r["err_dv"]),
                   cairn_fwd_tflops=r.get("fwd_tflops", 0.0), sdpa_fwd_tflops=flops / t_f / 1e9,
                   cairn_fwd_bwd_tflops=r.get("fwd_bwd_tflops", 0.0), sdpa_fwd_bwd_tflops=3.5 * flops / t_fb / 1e9,
                   cairn_bwd_tflops=r.get("bwd_tflops", 0.0), sdpa_bwd_tflops=2.5 * flops / (t_fb - t_f) / 1e9)
        row["ratio_fwd"] = row["cairn_fwd_tflops"] / row["sdpa_fwd_tflops"]
        row["ratio_fwd_bwd"] = row["cairn_fwd_bwd_tflops"] / row["sdpa_fwd_bwd_tflops"]
        rows.append(row)
    return {"device": c["device"], "bf16_gemm_tflops": c["bf16_gemm_tflops"], "all_valid": c["all_valid"], "rows": rows}


def torch_train_tokens_per_s(args):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    from cairn_torch import RewardModel

    torch.manual_seed(0)
    cfg = dict(PRESETS[args.preset], vocab_size=args.vocab_size, n_heads_out=1, sdpa=True)
    cfg["max_seq_len"] = max(cfg["max_seq_len"], args.seq_len)
    model = RewardModel(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    B, T = 2 * args.batch_pairs, args.seq_len
    ids = torch.randint(3, args.vocab_size, (B, T), device="cuda")
    if args.lengths == "uniform":
        lengths = torch.randint(T // 4, T + 1, (B,), generator=torch.Generator().manual_seed(1)).cuda()
        ids = ids[:, : int(lengths.max())]
    else:
        lengths = torch.full((B,), T, dtype=torch.long, device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            r = model(ids, lengths)[:, 0].float()
        loss = -F.logsigmoid(r[0::2] - r[1::2]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup + 3):
        step()
    times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"ms_per_step_median": med * 1e3, "tokens_per_s": float(lengths.sum()) / med, "torch": torch.__version__}


def compare_train(args):
    cmd = [args.cairn, "bench", "train", "--device", "cuda", "--json", "--preset", args.preset, "--batch-pairs",
           str(args.batch_pairs), "--seq-len", str(args.seq_len), "--vocab-size", str(args.vocab_size), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--lengths", args.lengths]
    c_rounds, t_rounds = [], []
    for r in range(args.rounds):  # alternate, so drift hits both alike
        c_rounds.append(json.loads(subprocess.run(cmd + (["--no-sgemm"] if r else []), check=True,
                                                  capture_output=True, text=True).stdout))
        t_rounds.append(torch_train_tokens_per_s(args))
    cairn = dict(c_rounds[0])
    cairn["tokens_per_s"] = statistics.median(c["tokens_per_s"] for c in c_rounds)
    cairn["ms_per_step_median"] = statistics.median(c["ms_per_step_median"] for c in c_rounds)
    pt = {"tokens_per_s": statistics.median(t["tokens_per_s"] for t in t_rounds),
          "ms_per_step_median": statistics.median(t["ms_per_step_median"] for t in t_rounds),
          "torch": t_rounds[0]["torch"]}
    return {"cairn": cairn, "pytorch": pt, "ratio_tokens_per_s": cairn["tokens_per_s"] / pt["tokens_per_s"],
            "ratio_per_round": [c["tokens_per_s"] / t["tokens_per_s"] for c, t in zip(c_rounds, t_rounds)]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cairn", default="build/cairn")
    p.add_argument("--what", default="attention,train")
    p.add_argument("--seq-lens", default="1024,2048,4096,8192,16384")
    p.add_argument("--head-dims", default="64,128")
    p.add_argument("--tokens", type=int, default=16384, help="batch = tokens / seq_len (FlashAttention's sweep)")
    p.add_argument("--model-dim", type=int, default=2048, help="heads = model_dim / head_dim")
    p.add_argument("--causal", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--preset", default="base", choices=PRESETS)
    p.add_argument("--batch-pairs", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--lengths", default="fixed", choices=["fixed", "uniform"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--json-out", help="also write the JSON object to this file")
    args = p.parse_args()
    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    if "attention" in args.what:
        out["attention"] = compare_attention(args)
    if "train" in args.what:
        out["train"] = compare_train(args)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
    if args.json:
        print(json.dumps(out))
        return
    if "attention" in out:
        a = out["attention"]
        print(f"attention on {a['device']}, bf16, {'causal' if args.causal else 'full'}; TFLOP/s (FlashAttention "
              f"convention), cuBLAS bf16 GEMM {a['bf16_gemm_tflops']:.0f} TFLOP/s; torch {out['torch']} SDPA flash")
        print(f"{'impl':<8} {'B':>3} {'H':>3} {'N':>6} {'d':>4} {'err out':>8} {'err grad':>8} | {'cairn fwd':>9} {'SDPA fwd':>9} "
              f"{'ratio':>6} | {'cairn f+b':>9} {'SDPA f+b':>9} {'ratio':>6}")
        for r in a["rows"]:
            print(f"{r['impl']:<8} {r['B']:>3} {r['H']:>3} {r['N']:>6} {r['d']:>4} {r['err_out']:8.1e} {r['err_grad']:8.1e} | "
                  f"{r['cairn_fwd_tflops']:9.1f} {r['sdpa_fwd_tflops']:9.1f} {r['ratio_fwd']:6.2f} | "
                  f"{r['cairn_fwd_bwd_tflops']:9.1f} {r['sdpa_fwd_bwd_tflops']:9.1f} {r['ratio_fwd_bwd']:6.2f}")
    if "train" in out:
        t = out["train"]
        c, pt = t["cairn"], t["pytorch"]
        print(f"train: preset {args.preset}, {args.batch_pairs} pairs x seq {args.seq_len} ({args.lengths}), "
              f"median of {args.rounds} alternating rounds")
        print(f"  cairn    {c['tokens_per_s']:10.0f} tokens/s  {c['ms_per_step_median']:7.2f} ms/step  ({c['device']})")
        print(f"  PyTorch  {pt['tokens_per_s']:10.0f} tokens/s  {pt['ms_per_step_median']:7.2f} ms/step  "
              f"(bf16 autocast, SDPA, fused AdamW, torch {pt['torch']})")
        print(f"  ratio cairn/PyTorch {t['ratio_tokens_per_s']:.2f}x  (per round: "
              f"{', '.join(f'{r:.2f}' for r in t['ratio_per_round'])})")


if __name__ == "__main__":
    main()
