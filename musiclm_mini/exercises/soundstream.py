"""Exercise of Chapter 3: write SoundStream's causal, strided convolution.

The reader writes `fn(x, weight, bias, stride, dilation) -> y`, with
    x:      (B, C_in, T) float
    weight: (C_out, C_in, K) float, bias: (C_out,) float
    y:      (B, C_out, ceil(T / stride)) float, where y[..., t] depends on x[..., : (t + 1) * stride] only
`check_causal_conv(fn)` grades it against `musiclm_mini.soundstream.Conv1d(causal=True)`.
"""
from __future__ import annotations

import math
import traceback
from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from ..soundstream import Conv1d


def reference_causal_conv(x: Tensor, weight: Tensor, bias: Tensor, stride: int = 1, dilation: int = 1) -> Tensor:
    """The answer to Chapter 3's exercise: pad on the left (and complete the last frame), then convolve (Chapter 3)."""
    kernel = weight.shape[-1]
    left = (kernel - 1) * dilation + 1 - stride  # everything a frame needs from the past
    right = -x.shape[-1] % stride  # zeros to complete the last frame
    return F.conv1d(F.pad(x, (left, right)), weight, bias, stride=stride, dilation=dilation)


# (name, C_in, C_out, kernel, stride, dilation, T)
CASES = [
    ("kernel 7, stride 1 (first conv of the encoder)", 1, 4, 7, 1, 1, 50),
    ("kernel 7, dilation 9 (last residual unit of a block)", 3, 3, 7, 1, 9, 80),
    ("kernel 8, stride 4 (a downsampling conv, T a multiple of 4)", 2, 4, 8, 4, 1, 64),
    ("kernel 12, stride 6, T not a multiple of the stride", 2, 4, 12, 6, 1, 61),
]


def _layer(c_in: int, c_out: int, kernel: int, stride: int, dilation: int, seed: int) -> Conv1d:
    torch.manual_seed(seed)
    return Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation, causal=True)


def check_causal_conv(fn: Callable[..., Tensor], verbose: bool = True) -> bool:
    """Grade a reader's causal strided convolution; print what passed and what did not (Chapter 3).

    Checks the output length, the values against the package's `Conv1d(causal=True)`, and that
    changing the future of the input never changes the past of the output. Never raises.
    """
    say = print if verbose else (lambda *a, **k: None)
    passed = True
    for i, (name, c_in, c_out, kernel, stride, dilation, length) in enumerate(CASES):
        layer = _layer(c_in, c_out, kernel, stride, dilation, seed=i)
        x = torch.randn(2, c_in, length, generator=torch.Generator().manual_seed(100 + i))
        want = layer(x).detach()
        try:
            with torch.no_grad():
                got = torch.as_tensor(fn(x.clone(), layer.weight.detach(), layer.bias.detach(), stride, dilation))
                cut = length // 2
                future = x.clone()
                future[..., cut:] = torch.randn_like(future[..., cut:])
                got_future = torch.as_tensor(fn(future, layer.weight.detach(), layer.bias.detach(), stride, dilation))
        except NotImplementedError:
            say(f"FAIL  {name}: not implemented yet (the function raised NotImplementedError)")
            passed = False
            continue
        except Exception:  # the reader's bug, shown to the reader
            say(f"FAIL  {name}: the function raised\n{traceback.format_exc(limit=1)}")
            passed = False
            continue
        frames = math.ceil(length / stride)
        past = cut // stride  # output frames that end before the changed samples
        if got.shape != want.shape:
            say(f"FAIL  {name}: shape {tuple(got.shape)}, expected {tuple(want.shape)} (ceil(T / stride) = {frames} frames)")
            passed = False
        elif not torch.allclose(got[..., :past], got_future[..., :past], atol=1e-5):
            say(f"FAIL  {name}: changing samples from {cut} on changed earlier outputs: the conv sees the future")
            passed = False
        elif not torch.allclose(got, want, atol=1e-4):
            err = (got - want).abs().max().item()
            say(f"FAIL  {name}: values differ from the reference by up to {err:.3g} (check the padding)")
            passed = False
        else:
            say(f"ok    {name}")
    say("All checks passed." if passed else "Some checks failed: read the messages above.")
    return passed
