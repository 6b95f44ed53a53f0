"""Exercise of Chapter 5: write MuLan's contrastive loss.

The reader writes `fn(audio, text, log_scale) -> loss`, with
    audio, text: (B, D) unit-norm embeddings, pair i matching (clip i goes with caption i)
    log_scale:   0-d tensor, log of the inverse temperature
    loss:        0-d tensor, the symmetric InfoNCE of CLIP
`check_contrastive_loss(fn)` grades it against `reference_contrastive_loss`, written here from the definition,
independently of `musiclm_mini.tokenizers.mulan.contrastive_loss`; a test ties the two.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .grading import grade


def reference_contrastive_loss(audio: Tensor, text: Tensor, log_scale: Tensor) -> Tensor:
    """The answer to Chapter 5's exercise: cross-entropy along rows and columns, averaged (Chapter 5)."""
    logits = log_scale.exp() * audio @ text.T  # (B, B): clip i against caption j
    audio_to_text = -torch.log_softmax(logits, dim=1).diagonal().mean()  # each clip picks its caption
    text_to_audio = -torch.log_softmax(logits, dim=0).diagonal().mean()  # each caption picks its clip
    return (audio_to_text + text_to_audio) / 2


def _unit(b: int, d: int, seed: int) -> Tensor:
    return F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _cases() -> list[tuple[str, Tensor, Tensor, Tensor]]:
    a8, t8 = _unit(8, 16, 1), _unit(8, 16, 2)
    skew = _unit(6, 4, 3)
    return [
        ("a random batch of 8 pairs", a8, t8, torch.tensor(2.0)),
        ("a batch where every clip sits on its caption", a8, a8.clone(), torch.tensor(3.0)),
        ("an uneven batch (rows and columns differ)", skew, F.normalize(skew + 0.8 * _unit(6, 4, 4), dim=-1),
         torch.tensor(2.5)),
        ("one pair only (the loss must be 0)", a8[:1], t8[:1], torch.tensor(1.0)),
        ("a cold temperature (large logits)", a8, t8, torch.tensor(4.6)),
    ]


def check_contrastive_loss(fn: Callable[[Tensor, Tensor, Tensor], Tensor], verbose: bool = True) -> bool:
    """Grade a reader's contrastive loss; print what passed and what did not (Chapter 5).

    Never raises: an exception inside `fn` counts as a failed check, so the notebook keeps running.
    """
    def compare(got, audio: Tensor, text: Tensor, log_scale: Tensor) -> str | None:
        want = reference_contrastive_loss(audio, text, log_scale)
        got = torch.as_tensor(got).float()
        if got.numel() != 1:
            return f"expected one number (a 0-d tensor), got shape {tuple(got.shape)}"
        if not torch.allclose(got.reshape(()), want, atol=1e-4):
            one_way = F.cross_entropy(log_scale.exp() * audio @ text.t(), torch.arange(len(audio)))
            hint = (" (that is only audio->text: average it with text->audio)"
                    if torch.allclose(got.reshape(()), one_way, atol=1e-4) else "")
            return f"got {got.item():.4f}, expected {want.item():.4f}{hint}"
        return None

    return grade(_cases(), fn, compare, verbose)
