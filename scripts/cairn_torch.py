"""The cairn reward model (docs/model.md#architecture) in PyTorch: the one Python definition, used by
scripts/load_pytorch.py (interoperability) and bench/compare_torch.py (speed comparison).

Parameter names and shapes are exactly those of model.safetensors (docs/run-directory.md#model-weights), so a run directory
loads with load_state_dict(strict=True).
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff, sdpa=False):
        super().__init__()
        self.n_heads = n_heads
        self.sdpa = sdpa  # F.scaled_dot_product_attention (flash on GPU) instead of the explicit softmax
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(d, d_ff)
        self.mlp.proj = nn.Linear(d_ff, d)

    def forward(self, x, mask):
        B, T, C = x.shape
        H = self.n_heads
        q, k, v = self.attn.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
            s = s.masked_fill(mask, float("-inf"))
            y = torch.softmax(s, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.attn.proj(y)
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))


class RewardModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["d_model"]
        self.tok_emb = nn.Embedding(cfg["vocab_size"], d)
        self.pos_emb = nn.Embedding(cfg["max_seq_len"], d)
        self.blocks = nn.ModuleList(Block(d, cfg["n_heads"], cfg["d_ff"], cfg.get("sdpa", False))
                                    for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, cfg.get("n_heads_out", 1))

    def forward(self, ids, lengths):
        """ids: [B, T] right-padded token ids; lengths: [B]. Returns rewards [B, n_heads_out],
        read at each sequence's last token (its EOS)."""
        B, T = ids.shape
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))[None]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=ids.device), diagonal=1)
        for blk in self.blocks:
            x = blk(x, mask)
        last = x[torch.arange(B), lengths - 1]
        return self.head(self.ln_f(last))

    def composite(self, rewards):
        w = torch.tensor(self.cfg.get("head_weights", [1.0] * rewards.shape[1]), dtype=rewards.dtype)
        return rewards @ w


def read_safetensors(path):
    """Parses a safetensors file with the standard library and numpy (no safetensors package)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32")
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + b : base + e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_run(run_dir):
    """Loads config.json + model.safetensors of a cairn run directory into a RewardModel (strict)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    model = RewardModel(cfg)
    model.load_state_dict(read_safetensors(os.path.join(run_dir, "model.safetensors")), strict=True)
    model.eval()
    return model, cfg


def pad_batch(seqs, pad_id=0):
    """List of id lists → (ids [B, T] right-padded, lengths [B])."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs], dtype=torch.long)
