"""Audio for the codec alone: many more SynthCaps arrangements, of scores SynthCaps never uses (Chapter 3).

A codec needs no captions, only hours of audio, and the tiny SynthCaps holds 43 minutes of
training audio. This renders `per_score` clips of each of `num_scores` further scores of the
corpus, taken in the same seeded order as SynthCaps' own (`scores.list_sources`) but *after* every
score SynthCaps considers: so no validation or test score (nor any training score) is among them,
and the codec's held-out figures stay held out.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from . import render, scores, synthcaps


def codec_audio_dir(preset) -> Path:
    """Folder of the codec-only audio: `<data root>/codec-audio-<preset name>` (Chapter 3)."""
    return synthcaps.data_root() / f"codec-audio-{preset.name}"


def generate_codec_audio(data_config, num_scores: int, per_score: int, out_dir,
                         num_workers: int = 2, verbose: bool = False) -> Path:
    """Render `per_score` clips of `num_scores` scores beyond SynthCaps' candidates into `out_dir`.

    Writes `waveforms-train.npy` (N, T) int16 and `sources.json` (the scores used).
    """
    cfg = dataclasses.asdict(data_config)
    skip = len(synthcaps._candidates(cfg)[0])  # every score SynthCaps may use, whatever its split
    sources = scores.list_sources(cfg["seed"], skip + int(num_scores * 1.3) + 8)[skip:]
    jobs = [(skip + i, sid, per_score, cfg) for i, sid in enumerate(sources)]
    start, used, clips = time.time(), [], []
    results = synthcaps._run(jobs, synthcaps._source_job, num_workers)
    for (_, sid, _, _), rendered in zip(jobs, results):
        if rendered:
            used.append(sid)
            clips += [render.decode_wav_int16(c["wav"])[0] for c in rendered]
        if len(used) >= num_scores:
            break
    results.close()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "waveforms-train.npy", np.stack(clips))
    (out_dir / "sources.json").write_text(json.dumps(used, indent=1))
    if verbose:
        print(f"codec audio: {len(clips)} clips of {len(used)} scores in {time.time() - start:.0f} s -> {out_dir}")
    return out_dir


def ensure_codec_audio(preset, num_scores: int, per_score: int, num_workers: int = 2, verbose: bool = False) -> Path:
    """The codec-only audio folder, rendered first if missing or made with other settings (Chapter 3)."""
    return synthcaps._ensure(codec_audio_dir(preset), preset.data,
                             lambda tmp: generate_codec_audio(preset.data, num_scores, per_score, tmp,
                                                              num_workers, verbose),
                             extra={"codec_audio_scores": num_scores, "codec_audio_per_score": per_score})


def codec_audio_waveforms(path) -> "torch.Tensor":
    """(N, T) float32 waveforms of a codec-audio folder."""
    import torch

    pcm = np.load(Path(path) / "waveforms-train.npy")
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)
