"""The embedder's training batches: groups of one melody in several acoustics, as mel frames (Chapter 8).

Paper (Sec. 6): "a synthetic dataset composed of audio pairs with matching melodies but different
acoustics". Ours is rendered by `data/melody_pairs.py` (`ensure_melody_set`): excerpts of scores, each
played by three instruments in random octaves, hummed, whistled and inside a full arrangement. A batch
takes `groups` melodies and `per_group` of their renderings, cut at the *same* 4 s of the tune (the hum
and whistle wander by up to 3 % in tempo, as a singer would), so that the triplet loss has positives
(same melody) and negatives (every other melody) in every batch:

    clip log-mels (N, n_mels, F), computed once  --group, variant, offset-->  (G * V, n_mels, frames)
    labels (G * V,): the melody of each window

Data order and crops are pure functions of (seed, step) (`train/loop.py`), so training resumes exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .frontend import MelSettings, mel_power


def clip_logmels(pcm: np.ndarray, settings: MelSettings, chunk: int = 64) -> Tensor:
    """(N, T) int16 clips -> (N, n_mels, frames) float16 log-mel power (Chapter 8).

    float16 halves the memory (a power spectrum would overflow it, its log does not).
    """
    out = []
    for start in range(0, len(pcm), chunk):
        wave = torch.from_numpy(pcm[start:start + chunk].astype(np.float32) / 32768.0)
        out.append(torch.log(mel_power(wave, settings) + 1e-6).half())
    return torch.cat(out)


class MelodyGroups:
    """One split of the melody set as mel frames, grouped by melody (Chapter 8)."""

    def __init__(self, pcm: np.ndarray, labels: list[dict], settings: MelSettings):
        if len(pcm) != len(labels):
            raise ValueError(f"{len(pcm)} clips but {len(labels)} labels")
        self.labels = labels
        self.logmel = clip_logmels(pcm, settings)  # (N, n_mels, F)
        by_melody: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            by_melody.setdefault(lab["melody_id"], []).append(i)
        self.groups = [rows for rows in by_melody.values() if len(rows) >= 2]  # a melody needs a positive
        by_score: dict[str, list[int]] = {}
        for index, rows in enumerate(self.groups):
            by_score.setdefault(labels[rows[0]]["source_id"], []).append(index)
        # The other excerpts of the same score: same key, tempo and instruments, another melody.
        self.siblings = [[j for j in by_score[labels[rows[0]]["source_id"]] if j != i] for i, rows in enumerate(self.groups)]

    def with_siblings(self, groups: list[int], g: torch.Generator) -> list[int]:
        """Each melody followed by a random sibling (another excerpt of its score), or by itself if it has none.

        Half the batch's negatives are then as hard as a negative can be: everything alike but the notes.
        """
        out = []
        for i in groups:
            sib = self.siblings[i]
            out += [i, sib[int(torch.randint(len(sib), (1,), generator=g))]] if sib else [i]
        return list(dict.fromkeys(out))  # a melody drawn twice appears once

    @classmethod
    def from_folder(cls, path: str | Path, split: str, settings: MelSettings) -> "MelodyGroups":
        from ..data.melody_pairs import load_melody_set

        return cls(*load_melody_set(path, split), settings)

    def batch(self, groups: list[int], per_group: int, frames: int, g: torch.Generator,
              jitter: int = 2) -> tuple[Tensor, Tensor]:
        """Windows of `per_group` renderings of each melody in `groups` -> (power (B, M, frames), labels (B,)).

        One offset per melody, so its renderings play the same notes; each moves by up to `jitter`
        frames (40 ms) more, as no two performances start at exactly the same instant.
        """
        total = self.logmel.shape[-1]
        windows, labels = [], []
        for label, index in enumerate(groups):
            rows = self.groups[index]
            pick = torch.randperm(len(rows), generator=g)[:per_group].tolist()
            offset = int(torch.randint(jitter, total - frames - jitter + 1, (1,), generator=g))
            for k in pick:
                start = offset + int(torch.randint(-jitter, jitter + 1, (1,), generator=g))
                windows.append(self.logmel[rows[k], :, start:start + frames])
                labels.append(label)
        return torch.stack(windows).float().exp(), torch.tensor(labels)  # back to power for `augment`
