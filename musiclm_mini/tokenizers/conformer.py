"""The Conformer block: convolution-augmented self-attention (Chapter 4).

w2v-BERT (Chung et al., 2021) stacks Conformer blocks (Gulati et al., 2020). Attention sees the
whole clip at once (long-range structure: harmony, form); the depthwise convolution sees a few
neighbouring frames (local structure: onsets, note changes). One block is a "macaron":

    x = x + 1/2 FFN(x)          feed-forward, half step
    x = x + MHSA(x)             multi-head self-attention
    x = x + Conv(x)             pointwise -> GLU -> depthwise -> norm -> Swish -> pointwise
    x = x + 1/2 FFN(x)          feed-forward, the other half step
    x = LayerNorm(x)

Two simplifications, both deliberate:
  * no positional encoding in attention: the depthwise convolutions (here and in the feature
    encoder) already tell each frame where its neighbours are, as wav2vec 2.0's convolutional
    position embedding does; the paper's Conformer uses relative sinusoidal positions instead.
  * LayerNorm instead of BatchNorm in the convolution module, so a clip's tokens never depend on
    which other clips share its batch (tokenization must be deterministic per clip).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, ff) -> Swish -> Linear(ff, d) (Chapter 4). (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, d_ff), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """LayerNorm -> multi-head self-attention over all frames (Chapter 4). (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.1):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.drop(self.out(y))


class ConvModule(nn.Module):
    """Pointwise conv + GLU -> depthwise conv -> norm -> Swish -> pointwise conv (Chapter 4).

    (B, T, D) -> (B, T, D); the depthwise kernel (odd, `kernel` frames) is the block's local view.
    """

    def __init__(self, d_model: int, kernel: int, dropout: float = 0.1):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd so frames stay centred, got {kernel}")
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)  # doubled for the GLU gate
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.mid_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).transpose(1, 2)  # (B, D, T)
        y = F.glu(self.pointwise_in(y), dim=1)  # (B, D, T)
        y = self.depthwise(y)  # (B, D, T)
        y = F.silu(self.mid_norm(y.transpose(1, 2))).transpose(1, 2)  # (B, D, T)
        return self.drop(self.pointwise_out(y).transpose(1, 2))  # (B, T, D)


class ConformerBlock(nn.Module):
    """One macaron Conformer block (Chapter 4). (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, conv_kernel: int, dropout: float = 0.1):
        super().__init__()
        self.ff1 = FeedForward(d_model, d_ff, dropout)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, conv_kernel, dropout)
        self.ff2 = FeedForward(d_model, d_ff, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)  # half-step FFNs sandwich attention and convolution (macaron)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """A stack of Conformer blocks that can return every layer's output (Chapter 4).

    x (B, T, D) -> list of n_layers tensors (B, T, D); index i is the output of block i + 1.
    """

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, conv_kernel: int,
                 dropout: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, n_heads, d_ff, conv_kernel, dropout) for _ in range(n_layers))

    def forward(self, x: Tensor, upto: int | None = None) -> list[Tensor]:
        outputs = []
        for block in self.blocks[: upto if upto is not None else len(self.blocks)]:
            x = block(x)
            outputs.append(x)
        return outputs
