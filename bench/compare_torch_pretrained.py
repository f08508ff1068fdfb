#!/usr/bin/env python3
"""cairn vs transformers: one reward-model training step of a pretrained backbone (SmolLM2-135M by
default), same weights, batch, sequence length and frozen blocks: fp32 on the CPU (same thread
count); bf16 GEMMs on the CPU with --cpu-math bf16 (cairn's oneDNN bf16 linear layers against
PyTorch's CPU bf16 autocast, which runs its linear layers on oneDNN's bf16 matmuls too); or on a GPU
with --device cuda (cairn's bf16 GEMMs and bf16 flash attention against PyTorch's bf16 autocast,
SDPA attention and fused AdamW: how people train there).

Alternates --rounds rounds of `cairn bench train --init MODEL --json` and the same step in
transformers (LlamaForSequenceClassification: forward of chosen + rejected, Bradley–Terry loss,
backward, global-norm clip, AdamW over the trainable parameters; eager attention on the CPU, SDPA on
the GPU), so machine drift hits both alike; prints the median tokens/s of each and the ratio. Run
with the .venv python (scripts/setup.sh) — it has transformers and gguf — or any python with
torch, transformers 4.44+ and gguf:

    .venv/bin/python bench/compare_torch_pretrained.py --cairn build/cairn --batch-pairs 2 --seq-len 256
    .venv/bin/python bench/compare_torch_pretrained.py --cairn build/cairn --cpu-math bf16
    python3 bench/compare_torch_pretrained.py --device cuda --batch-pairs 16 --seq-len 512
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from hf_reference import gguf_llama  # noqa: E402


def set_attention(model, impl):
    if hasattr(model, "set_attn_implementation"):  # transformers 5
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl
    return model.config._attn_implementation


def torch_setup(args):
    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    from transformers import LlamaForSequenceClassification
    backbone = gguf_llama(args.model)
    cfg = backbone.config
    cfg.num_labels, cfg.pad_token_id = 1, 0
    model = LlamaForSequenceClassification(cfg)
    model.model.load_state_dict(backbone.state_dict())
    del backbone
    args.torch_attention = set_attention(model, "sdpa" if cuda else "eager")
    model.to(args.device)
    for i, layer in enumerate(model.model.layers):
        layer.requires_grad_(i >= args.freeze_layers)
    if args.freeze_layers > 0:
        model.model.embed_tokens.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **({"fused": True} if cuda else {}))
    B, T = 2 * args.batch_pairs, args.seq_len
    ids = torch.randint(3, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(1)).to(args.device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(args.device, dtype=torch.bfloat16) if args.torch_autocast else contextlib.nullcontext():
            r = model(input_ids=ids).logits[:, 0].float()
        loss = -F.logsigmoid(r[0::2] - r[1::2]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()

    def round_():
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return B * T / statistics.median(times)

    return round_


def cairn_round(args):
    cmd = [args.cairn, "bench", "train", "--init", args.model, "--batch-pairs", str(args.batch_pairs), "--seq-len",
           str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup), "--freeze-layers",
           str(args.freeze_layers), "--no-sgemm", "--json", "--device", args.device]
    cmd += (["--cuda-math", args.cuda_math] if args.device == "cuda" else
            ["--threads", str(args.threads), "--cpu-math", args.cpu_math])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"cairn failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    j = json.loads(p.stdout)
    return j["tokens_per_s"], j


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cairn", default="build/cairn")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/cairn/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--batch-pairs", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--freeze-layers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="cpu: threads of both")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--cuda-math", default="bf16", help="cuda: cairn's GEMM precision (bf16|tf32|fp32)")
    ap.add_argument("--cpu-math", default="fp32", choices=["fp32", "bf16"],
                    help="cpu: cairn's linear-layer GEMMs; bf16 puts PyTorch under CPU bf16 autocast too")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    args.torch_autocast = args.device == "cuda" or args.cpu_math == "bf16"
    t0 = time.perf_counter()
    torch_round = torch_setup(args)
    torch_load_s = time.perf_counter() - t0
    cairn_tps, torch_tps, last = [], [], None
    for r in range(args.rounds):
        c, last = cairn_round(args)
        t = torch_round()
        cairn_tps.append(c), torch_tps.append(t)
        print(f"round {r + 1}: cairn {c:.1f} tokens/s, transformers {t:.1f} tokens/s, ratio {c / t:.2f}", file=sys.stderr)
    out = {"bench": "train_pretrained_vs_transformers", "model": args.model, "batch_pairs": args.batch_pairs,
           "seq_len": args.seq_len, "freeze_layers": args.freeze_layers, "device": args.device,
           "threads": args.threads if args.device == "cpu" else None,
           "cuda_math": args.cuda_math if args.device == "cuda" else None,
           "cpu_math": args.cpu_math if args.device == "cpu" else None,
           "torch_attention": args.torch_attention, "torch_autocast": "bf16" if args.torch_autocast else None,
           "cairn_tokens_per_s": statistics.median(cairn_tps), "torch_tokens_per_s": statistics.median(torch_tps),
           "ratio": statistics.median(cairn_tps) / statistics.median(torch_tps),
           "rounds": [{"cairn": c, "torch": t} for c, t in zip(cairn_tps, torch_tps)],
           "torch_version": torch.__version__, "transformers_version": transformers.__version__,
           "transformers_load_s": torch_load_s, "cairn_device": last["device"],
           "cairn_peak_rss_mib": last["peak_rss_mib"], "cairn_op_profile": last["op_profile"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
