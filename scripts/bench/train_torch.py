#!/usr/bin/env python3
"""PyTorch eager reference for `cargo xtask bench train`.

The same Music Transformer as cadenza-trainer (core/src/model.rs): token
embedding, pre-norm blocks with relative self-attention (Huang et al. 2018,
memory-efficient skewing, one rel_emb per layer shared by the heads), ReLU
feed-forward, final layer norm, untied head. Trained the way a plain PyTorch
script would: nn.Linear layers, torch.optim.AdamW, clip_grad_norm_, fp32 unless
--autocast-bf16 is given. Random tokens stand in for data: throughput does not
depend on the values.

Prints one JSON line: {"impl", "config", "batch", "seq_len", "steps",
"tokens_per_s", "ms_per_step", "peak_rss_mb", "threads", "precision"}.
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB_SIZE = 391
PAD = 388
PRESETS = {
    "tiny": dict(n_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.1, max_seq_len=256),
    "small": dict(n_layers=4, d_model=256, n_heads=4, d_ff=1024, dropout=0.1, max_seq_len=512),
    "base": dict(n_layers=6, d_model=512, n_heads=8, d_ff=1024, dropout=0.1, max_seq_len=2048),
}


def skew(qe):
    """[B, H, T, T] logits against distances T-1..0 -> logits indexed [i, j] by d = i - j."""
    b, h, t, _ = qe.shape
    padded = F.pad(qe, (1, 0))
    return padded.reshape(b, h, t + 1, t)[:, :, 1:, :]


class RelativeAttention(nn.Module):
    def __init__(self, d_model, n_heads, max_seq_len, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)
        self.rel_emb = nn.Parameter(torch.randn(max_seq_len, self.head_dim) * 0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape

        def heads(y):
            return y.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        rel = self.rel_emb[:t].flip(0)
        logits = q @ k.transpose(-1, -2) + skew(q @ rel.t())
        logits = logits / math.sqrt(self.head_dim)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        logits = logits.masked_fill(mask, float("-inf"))
        probs = self.dropout(torch.softmax(logits, dim=-1))
        out = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.o(out)


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg["d_model"])
        self.attn = RelativeAttention(cfg["d_model"], cfg["n_heads"], cfg["max_seq_len"], cfg["dropout"])
        self.ln2 = nn.LayerNorm(cfg["d_model"])
        self.ff = FeedForward(cfg["d_model"], cfg["d_ff"])
        self.dropout = nn.Dropout(cfg["dropout"])

    def forward(self, x):
        x = x + self.dropout(self.attn(self.ln1(x)))
        return x + self.dropout(self.ff(self.ln2(x)))


class MusicTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, cfg["d_model"])
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(cfg["d_model"])
        self.head = nn.Linear(cfg["d_model"], VOCAB_SIZE)
        self.dropout = nn.Dropout(cfg["dropout"])

    def forward(self, tokens):
        x = self.dropout(self.embed(tokens))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(PRESETS), default="small")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=None, help="crop length (default: the preset's max_seq_len)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autocast-bf16", action="store_true", help="torch.autocast('cpu', bfloat16) around forward")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PRESETS[args.config]
    seq_len = args.seq_len or cfg["max_seq_len"]
    model = MusicTransformer(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)

    def step():
        seq = torch.randint(0, PAD, (args.batch, seq_len + 1), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
            logits = model(seq[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), seq[:, 1:].reshape(-1), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed_s = time.perf_counter() - start
    tokens = args.batch * seq_len * args.steps
    print(json.dumps({
        "impl": "pytorch-eager",
        "config": args.config,
        "batch": args.batch,
        "seq_len": seq_len,
        "steps": args.steps,
        "tokens_per_s": tokens / elapsed_s,
        "ms_per_step": 1000.0 * elapsed_s / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": args.threads,
        "precision": "bf16-autocast" if args.autocast_bf16 else "fp32",
    }))


if __name__ == "__main__":
    main()
