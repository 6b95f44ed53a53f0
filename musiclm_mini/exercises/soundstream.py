"""Exercise of Chapter 3: write SoundStream's causal, strided convolution.

The reader writes `fn(x, weight, bias, stride, dilation) -> y`, with
    x:      (B, C_in, T) float
    weight: (C_out, C_in, K) float, bias: (C_out,) float
    y:      (B, C_out, ceil(T / stride)) float, where y[..., t] depends on x[..., : (t + 1) * stride] only
`check_causal_conv(fn)` grades it against `musiclm_mini.tokenizers.soundstream.Conv1d(causal=True)`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from ..tokenizers.soundstream import Conv1d
from .grading import grade


def reference_causal_conv(x: Tensor, weight: Tensor, bias: Tensor, stride: int = 1, dilation: int = 1) -> Tensor:
    """The answer to Chapter 3's exercise: pad on the left (and complete the last frame), then convolve (Chapter 3)."""
    kernel = weight.shape[-1]
    left = (kernel - 1) * dilation + 1 - stride  # everything a frame needs from the past
    right = -x.shape[-1] % stride  # zeros to complete the last frame
    return F.conv1d(F.pad(x, (left, right)), weight, bias, stride=stride, dilation=dilation)


# (name, C_in, C_out, kernel, stride, dilation, T)
SHAPES = [
    ("kernel 7, stride 1 (first conv of the encoder)", 1, 4, 7, 1, 1, 50),
    ("kernel 7, dilation 9 (last residual unit of a block)", 3, 3, 7, 1, 9, 80),
    ("kernel 8, stride 4 (a downsampling conv, T a multiple of 4)", 2, 4, 8, 4, 1, 64),
    ("kernel 12, stride 6, T not a multiple of the stride", 2, 4, 12, 6, 1, 61),
]


def _cases() -> list[tuple]:
    """(name, x, weight, bias, stride, dilation) with the weights of a seeded package `Conv1d`."""
    cases = []
    for i, (name, c_in, c_out, kernel, stride, dilation, length) in enumerate(SHAPES):
        torch.manual_seed(i)
        layer = Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation, causal=True)
        x = torch.randn(2, c_in, length, generator=torch.Generator().manual_seed(100 + i))
        cases.append((name, x, layer.weight.detach(), layer.bias.detach(), stride, dilation))
    return cases


def check_causal_conv(fn: Callable[..., Tensor], verbose: bool = True) -> bool:
    """Grade a reader's causal strided convolution; print what passed and what did not (Chapter 3).

    Checks the output length, the values against the package's `Conv1d(causal=True)`, and that
    changing the future of the input never changes the past of the output. Never raises.
    """

    def compare(got, x, weight, bias, stride, dilation) -> str | None:
        want = reference_causal_conv(x, weight, bias, stride, dilation)
        got = torch.as_tensor(got)
        if got.shape != want.shape:
            return (f"shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                    f"(ceil(T / stride) = {math.ceil(x.shape[-1] / stride)} frames)")
        cut = x.shape[-1] // 2
        future = x.clone()
        future[..., cut:] = torch.randn_like(future[..., cut:])
        past = cut // stride  # output frames that end before the changed samples
        with torch.no_grad():
            got_future = torch.as_tensor(fn(future, weight.clone(), bias.clone(), stride, dilation))
        if not torch.allclose(got[..., :past], got_future[..., :past], atol=1e-5):
            return f"changing samples from {cut} on changed earlier outputs: the conv sees the future"
        if not torch.allclose(got, want, atol=1e-4):
            return f"values differ from the reference by up to {(got - want).abs().max().item():.3g} (check the padding)"
        return None

    with torch.no_grad():
        return grade(_cases(), fn, compare, verbose)
