"""The decoder-only Transformer shared by the three hierarchical stages (Chapter 6).

One model, three jobs: the semantic, coarse and fine stages are each this class with their own
vocabulary (every token type of a stage lives in one vocabulary, at its own offset). The paper
(Sec. 4.1) gives 24 layers, 16 heads, d_model 1024, feed-forward 4096, dropout 0.1 and T5-style
relative positions, "430M parameters per stage". Design choices, each following T5.1.1, which is
what those numbers point to:

- Pre-norm with RMSNorm (T5's "LayerNorm" is an RMSNorm: no mean subtraction, no bias). Pre-norm
  keeps a clean residual path, so 24 layers train without warm-up tricks; RMSNorm is what T5 uses,
  is slightly cheaper, and re-centring buys nothing measurable in practice.
- GEGLU feed-forward (`gated_ff=True`): three d x ff matrices instead of two. Only this gives about
  430M parameters per stage; a plain GELU MLP gives about 330M (`stage_models.parameter_table`).
- No biases in Linear layers (T5): fewer parameters, no accuracy cost.
- Untied input embedding and output head (T5.1.1). A stage's vocabulary mixes token types whose
  input and output roles differ (MuLan tokens are only ever read, never predicted).
- Positions enter only through a learned bias on the attention logits, bucketed by the distance
  between query and key (T5). One bias table is shared by all layers and computed once per forward.
  Unlike T5 we keep the usual 1/sqrt(head_dim) scaling so we can call
  `F.scaled_dot_product_attention`.

Incremental decoding keeps each layer's keys and values in a `KVCache`, so generating a token costs
one position's work instead of re-running the whole sequence.

The model knows nothing of stages or sampling strategies: `stage_models.py` sizes it for a stage,
`sampling.py` decides how each next token is picked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..config import TransformerConfig
from .sampling import AllowedRange, Sampling, check_sampling, sample


# ---------------------------------------------------------------------------------------------
# Relative position bias (T5)
# ---------------------------------------------------------------------------------------------
def relative_position_bucket(relative_position: Tensor, num_buckets: int = 32, max_distance: int = 128,
                             bidirectional: bool = False) -> Tensor:
    """Map `key_pos - query_pos` to a bucket index in [0, num_buckets) as T5 does (Chapter 6).

    Small distances get a bucket each; larger ones share log-spaced buckets up to `max_distance`,
    beyond which everything falls in the last bucket. A causal decoder (bidirectional=False) only
    sees keys at or before the query, so positive offsets (future keys) are clamped to distance 0.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:  # half the buckets for keys after the query, half for keys before
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # how far back the key is
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced: distance max_exact -> bucket max_exact, distance max_distance -> bucket num_buckets
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """One learned scalar per (bucket, head), added to the attention logits (Chapter 6)."""

    def __init__(self, n_heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Embedding(num_buckets, n_heads)

    def last_row(self, offset: int) -> Tensor:
        """forward's bias for one query at `offset` over keys 0..offset -> (1, H, 1, offset + 1), the same values.

        A decoding step needs only this row, which depends on nothing but `offset`: it is cut from a table of
        the biases by distance, rebuilt when the weights change (their `_version`) or the row is longer than it.
        """
        w = self.table.weight
        cached = getattr(self, "_by_distance", None)
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        if cached is None or cached[0] != key or cached[1].shape[1] <= offset:
            n = max(2 * offset + 2, 256)
            distance = torch.arange(n - 1, -1, -1, device=w.device)  # n-1 ... 0: column j is distance n-1-j
            cached = (key, self.table(relative_position_bucket(-distance, self.num_buckets, self.max_distance)).t())
            self._by_distance = cached  # (H, n)
        n = cached[1].shape[1]
        return cached[1][None, :, None, n - 1 - offset:]  # keys 0..offset sit at distances offset..0

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Bias plus causal mask for queries at `q_pos` (Tq,) over keys at `k_pos` (Tk,) -> (1, H, Tq, Tk)."""
        rel = k_pos[None, :] - q_pos[:, None]  # (Tq, Tk), <= 0 for visible keys
        buckets = relative_position_bucket(rel, self.num_buckets, self.max_distance)
        bias = self.table(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, Tq, Tk)
        future = rel > 0  # a query must not see keys after it
        return bias.masked_fill(future, float("-inf"))


# ---------------------------------------------------------------------------------------------
# The block: pre-norm attention and feed-forward
# ---------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """x / rms(x) * gain: LayerNorm without re-centring or bias, as in T5 (Chapter 6)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        rms = x.pow(2).mean(-1, keepdim=True).add(self.eps).rsqrt()
        return x * rms * self.weight


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention that appends its keys/values to a per-layer cache (Chapter 6)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x: Tensor, attn_bias: Tensor, past: tuple[Tensor, Tensor] | None,
                room: tuple[Tensor, Tensor] | None = None):
        """`room`, two (B, H, capacity, Dh) buffers whose first T_past positions hold `past`: append there in place."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # each (B, T, D)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        if room is not None:  # write the new positions after the old ones; no copy of the old ones
            n = 0 if past is None else past[0].shape[2]
            room[0].narrow(2, n, T).copy_(k)
            room[1].narrow(2, n, T).copy_(v)
            k, v = room[0].narrow(2, 0, n + T), room[1].narrow(2, 0, n + T)  # (B, H, T_past + T, Dh) views
        elif past is not None:  # keys/values of earlier positions: no need to recompute them
            k = torch.cat([past[0], k], dim=2)  # (B, H, T_past + T, Dh)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.proj(y), (k, v)


class FeedForward(nn.Module):
    """GEGLU (gelu(x W) * x V) when `gated_ff`, else a two-matrix GELU MLP (Chapter 6)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.gated = config.gated_ff
        self.w_in = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.w_gate = nn.Linear(config.d_model, config.d_ff, bias=False) if self.gated else None
        self.w_out = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w_in(x)  # (B, T, F)
        h = F.gelu(self.w_gate(x), approximate="tanh") * h if self.gated else F.gelu(h, approximate="tanh")
        return self.w_out(h)  # (B, T, D)


class Block(nn.Module):
    """x + attn(norm(x)), then x + ff(norm(x)): the pre-norm residual block (Chapter 6)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm_attn, self.norm_ff = RMSNorm(config.d_model), RMSNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ff = FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_bias: Tensor, past: tuple[Tensor, Tensor] | None,
                room: tuple[Tensor, Tensor] | None = None):
        a, kv = self.attn(self.norm_attn(x), attn_bias, past, room)
        if not self.training:  # dropout is the identity: skip its two calls (a decoding step is many small ops)
            x = x + a
            return x + self.ff(self.norm_ff(x)), kv
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.norm_ff(x)))
        return x, kv


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
@dataclass
class KVCache:
    """What incremental decoding keeps between calls (Chapter 6).

    layers: one (k, v) per layer, each (B, H, offset, head_dim), for every position seen so far.
    offset: absolute position of the next token, i.e. how many tokens the cache holds.
    room: None, or one (k, v) pair of (B, H, capacity, head_dim) buffers per layer (`Transformer.empty_cache`),
        `layers` being views of their first `offset` positions. Then each step writes its keys and values
        in place instead of copying the whole, growing cache with `torch.cat` (Chapter 9's minute is
        thousands of steps). Such a cache only grows: the cache a step was given must not be continued
        a second time (its positions get overwritten).
    """

    layers: list[tuple[Tensor, Tensor]]
    offset: int
    room: list[tuple[Tensor, Tensor]] | None = None


class Transformer(nn.Module):
    """Decoder-only Transformer LM with T5 relative position bias and a KV cache (Chapter 6).

    `max_len`, if given, is only a guard: relative positions need no position table, so any
    length works, but a stage can refuse sequences longer than it was trained on.
    """

    def __init__(self, config: TransformerConfig, vocab_size: int, max_len: int | None = None):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.config, self.vocab_size, self.max_len = config, vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, config.d_model)
        self.rel_bias = RelativePositionBias(config.n_heads, config.rel_pos_buckets, config.rel_pos_max_distance)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_f = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: shrink the layers that write into the residual stream so its variance stays O(1)
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "ff.w_out.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: Tensor, cache: KVCache | None = None, last_only: bool = False):
        """tokens (B, T) -> (logits (B, T, V), new_cache) (Chapter 6).

        With `cache`, `tokens` continue the sequence the cache holds: they sit at absolute
        positions cache.offset ... cache.offset + T - 1 and attend to every cached key.
        `last_only` computes logits for the last position only (B, 1, V), which is all sampling needs.
        Token ids are not checked here, once per decoding step, but once per request (`check_tokens`).
        """
        B, T = tokens.shape
        offset = self._check_cache(cache, B)
        if self.max_len is not None and offset + T > self.max_len:
            raise ValueError(f"sequence of {offset + T} tokens is longer than max_len {self.max_len}")

        if T == 1 and not torch.is_grad_enabled():  # a decoding step: one cached row (no future keys to mask)
            attn_bias = self.rel_bias.last_row(offset)  # (1, H, 1, offset + 1)
        else:
            positions = torch.arange(offset + T, device=tokens.device)
            attn_bias = self.rel_bias(positions[offset:], positions)  # (1, H, T, offset + T), shared by all layers
        x = self.drop(self.tok_emb(tokens))  # (B, T, D)
        room = None if cache is None or cache.room is None or offset + T > cache.room[0][0].shape[2] else cache.room
        new_layers = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, attn_bias, None if cache is None else cache.layers[i], None if room is None else room[i])
            new_layers.append(kv)
        x = self.norm_f(x[:, -1:] if last_only else x)  # (B, T or 1, D)
        return self.head(x), KVCache(new_layers, offset + T, room)  # (B, T or 1, V)

    def empty_cache(self, batch: int, capacity: int) -> KVCache:
        """A cache holding nothing yet, with room for `capacity` positions written in place (Chapter 6).

        Same logits as starting without a cache (`sample` uses it; `KVCache` says why and its one rule).
        Past `capacity` the model falls back to concatenating.
        """
        p = next(self.parameters())
        shape = (batch, self.config.n_heads, capacity, self.config.d_model // self.config.n_heads)
        room = [(p.new_empty(shape), p.new_empty(shape)) for _ in self.blocks]
        return KVCache([(k[:, :, :0], v[:, :, :0]) for k, v in room], 0, room)

    def _check_cache(self, cache: KVCache | None, batch: int) -> int:
        if cache is None:
            return 0
        if len(cache.layers) != len(self.blocks):
            raise ValueError(f"cache has {len(cache.layers)} layers, model has {len(self.blocks)}")
        k = cache.layers[0][0]
        if k.shape[0] != batch or k.shape[2] != cache.offset:
            raise ValueError(f"cache holds batch {k.shape[0]} x {k.shape[2]} positions (offset {cache.offset}), "
                             f"tokens have batch {batch}")
        return cache.offset

    def check_tokens(self, tokens: Tensor, what: str = "tokens") -> Tensor:
        """(B, T >= 1) integer ids inside the vocabulary, else one ValueError (Chapter 6).

        Called once at the public boundary (`generate`, the stages' loaders and losses), not per step.
        """
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise ValueError(f"{what} must be (batch, time) with time >= 1, got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{what} must be integer ids, got dtype {tokens.dtype}")
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise ValueError(f"{what} ids must lie in [0, {self.vocab_size}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return tokens

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 greedy: bool = False, generator: torch.Generator | None = None, use_cache: bool = True,
                 allowed_range: AllowedRange | None = None) -> Tensor:
        """Continue `prompt` (B, T0) by `max_new_tokens` sampled tokens -> (B, T0 + new) (Chapter 6).

        As nanoGPT's `generate`: eval mode, one token per step, the KV cache unless `use_cache=False`.
        `allowed_range` keeps each step inside a vocabulary slice (see `sampling.sample`; guidance and
        progress bars too live there). `generator` must live on the model's device.
        """
        settings = check_sampling(Sampling(temperature, top_k, greedy), max_new_tokens)
        return sample(self, self.check_tokens(prompt, "prompt"), max_new_tokens, settings, generator, allowed_range,
                      use_cache)
