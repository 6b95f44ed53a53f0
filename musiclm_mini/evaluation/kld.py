"""KL divergence between label posteriors of reference and generated clips (Chapter 7; MusicLM Sec. 4.3).

MusicLM passes each reference clip (MusicCaps) and the clip generated from its caption through a
classifier trained on AudioSet, and reports KL(reference || generated) between the two label
distributions, averaged over captions (Table 1, "KLD"): a low value means the generated clip is
classified like the real one, i.e. it has the same *kind* of content.

The book's classifier is its own tagger (`tagger.py`), with one softmax head per label (instrument
family, drums, tempo bucket, mode, mood, style). Treating the heads as independent, the posterior
over all labels is the product of the heads' posteriors, and the KL of a product of independent
distributions is the sum of the per-head KLs; `kld` reports that sum and each head's share.

Posteriors are clipped to `eps` and renormalized before the logarithm, so a generated clip that a
head is sure is wrong gives a large but finite divergence.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

EPS = 1e-6


def _normalize(p, eps: float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if (p < 0).any() or not np.isfinite(p).all():
        raise ValueError("posteriors must be finite and non-negative")
    p = np.clip(p, eps, None)
    return p / p.sum(axis=-1, keepdims=True)


def kl_divergence(p, q, eps: float = EPS) -> np.ndarray:
    """KL(p || q) in nats for each row of two (N, C) arrays of distributions; returns (N,) (Chapter 7)."""
    p, q = _normalize(p, eps), _normalize(q, eps)
    if p.shape != q.shape:
        raise ValueError(f"posteriors differ in shape: {p.shape} vs {q.shape}")
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def mean_by_caption(posteriors, caption_ids: Sequence) -> tuple[list, np.ndarray]:
    """Average the posteriors of clips that share a caption: (captions in first-seen order, (K, C))."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    if len(caption_ids) != len(posteriors):
        raise ValueError(f"{len(caption_ids)} caption ids for {len(posteriors)} clips")
    order = list(dict.fromkeys(caption_ids))
    index = {c: i for i, c in enumerate(order)}
    sums = np.zeros((len(order), posteriors.shape[1]))
    counts = np.zeros(len(order))
    for row, cid in zip(posteriors, caption_ids):
        sums[index[cid]] += row
        counts[index[cid]] += 1
    return order, sums / counts[:, None]


def kld(reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
        reference_ids: Sequence | None = None, generated_ids: Sequence | None = None,
        eps: float = EPS) -> dict:
    """KL(reference || generated) per caption, averaged over captions, as MusicLM's KLD (Chapter 7).

    `reference` and `generated` map each head name to an (N, C) posterior array (a tagger's
    `predict` output). Without ids, row i of each side belongs to the same caption. With ids, the
    clips of one caption (several generated samples, say) are averaged per side first, and only
    captions present on both sides count. Returns {"kld": sum over heads of the mean KL,
    "per_head": {head: mean KL}, "per_caption": (K,) summed KL, "captions": ids or None}.
    """
    heads = [h for h in reference if h in generated]
    if not heads:
        raise ValueError("reference and generated posteriors share no head")
    captions = None
    if (reference_ids is None) != (generated_ids is None):
        raise ValueError("give caption ids for both sides or for neither")
    per_head, total = {}, None
    for head in heads:
        ref, gen = np.asarray(reference[head], np.float64), np.asarray(generated[head], np.float64)
        if reference_ids is not None:
            ref_caps, ref = mean_by_caption(ref, reference_ids)
            gen_caps, gen = mean_by_caption(gen, generated_ids)
            captions = [c for c in ref_caps if c in set(gen_caps)]
            if not captions:
                raise ValueError("no caption id is shared by reference and generated clips")
            ref = ref[[ref_caps.index(c) for c in captions]]
            gen = gen[[gen_caps.index(c) for c in captions]]
        values = kl_divergence(ref, gen, eps)
        per_head[head] = float(values.mean())
        total = values if total is None else total + values
    return {"kld": float(sum(per_head.values())), "per_head": per_head, "per_caption": total, "captions": captions}
