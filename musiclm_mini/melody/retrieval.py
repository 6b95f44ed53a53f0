"""Same-melody retrieval: does the embedder find a melody again in other acoustics? (Chapter 8)

The issue's acceptance figure, on held-out melodies (scores never seen in training). Each melody has
instrument renderings (slots 0, 1, 2), a hum and a whistle. For a query kind and a gallery kind:

    instrument -> instrument   query: instrument slot i of every melody; gallery: slot j != i of every
                               melody; averaged over the ordered pairs (i, j)
    hum -> instrument          query: the hum; gallery: instrument slot j; averaged over j
    whistle -> instrument      the same from the whistle
    X -> arrangement           from the hum, the whistle or instrument slot 0 to the melody inside a full
                               SynthCaps arrangement (harmony, bass, drums): the hum -> music question

recall@k = how often the query's own melody ranks among the k most similar of the gallery; chance is
k / N for N melodies. Two clips compare by the mean cosine of their aligned windows (three per 10 s).
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

VOICES = ("hum", "whistle")


def slots(labels: list[dict]) -> tuple[list[str], dict[str, list[int]]]:
    """Melodies with every rendering, and row indices per slot: {"instrument0": [...], "hum": [...], ...}."""
    by_melody: dict[str, dict[str, int]] = {}
    for i, lab in enumerate(labels):
        kinds = by_melody.setdefault(lab["melody_id"], {})
        named = lab["variant"] in (*VOICES, "arrangement")
        kind = lab["variant"] if named else f"instrument{sum(k.startswith('instrument') for k in kinds)}"
        kinds[kind] = i
    full = set.union(*(set(k) for k in by_melody.values())) if by_melody else set()
    melodies = [m for m, kinds in by_melody.items() if set(kinds) == full]
    return melodies, {kind: [by_melody[m][kind] for m in melodies] for kind in sorted(full)}


def recall_at(query: Tensor, gallery: Tensor, ks=(1, 5)) -> dict[str, float]:
    """query, gallery (N, W, D) unit windows, row i of each the same melody -> recall@k (Chapter 8)."""
    sims = torch.einsum("qwd,gwd->qg", query, gallery) / query.shape[1]  # (N, N): mean cosine over windows
    rank = (sims > sims.diag()[:, None]).sum(1)  # 0 = its own melody came first
    return {f"recall@{k}": float((rank < k).float().mean()) for k in ks}


def same_melody_retrieval(emb: Tensor, labels: list[dict], ks=(1, 5)) -> dict[str, float]:
    """Retrieval figures of clip embeddings emb (N_clips, W, D) with their labels (Chapter 8)."""
    melodies, rows = slots(labels)
    n = len(melodies)
    instruments = [k for k in rows if k.startswith("instrument")]
    plans = {"instrument": list(itertools.permutations(instruments, 2))}
    plans.update({voice: [(voice, j) for j in instruments] for voice in VOICES if voice in rows})
    if "arrangement" in rows:  # the melody inside a full arrangement: from each solo rendering
        plans.update({f"{q}_to_arrangement": [(q, "arrangement")] for q in ("hum", "whistle", "instrument0") if q in rows})
    out = {"melodies": float(n)}
    for name, pairs in plans.items():
        if not pairs:  # e.g. one instrument: no instrument-to-instrument pair
            continue
        figures = [recall_at(emb[rows[q]], emb[rows[g]], ks) for q, g in pairs]
        for k in ks:
            out[f"{name}_recall@{k}"] = sum(f[f"recall@{k}"] for f in figures) / len(figures)
    for k in ks:
        out[f"chance@{k}"] = min(1.0, k / n)
    return out
