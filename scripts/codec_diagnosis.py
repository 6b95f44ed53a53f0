"""Chapter 3: where does the spectral codec lose the notes? Rebuild validation clips with one part swapped.

    python scripts/codec_diagnosis.py --json book/data/codec-diagnosis.json     # 8 validation clips, ~3 CPU-min

Every variant goes through the codec's own STFT (960-sample Hann window, hop 240) and is transcribed by
basic-pitch; note F1 is scored against the notes SynthCaps rendered (`evaluation/transcribe.py`):

    originals                             the yardstick
    the codec                             encode, 8 RVQ levels, decode: what the book ships
    the codec without its quantizer       the encoder's latents decoded directly: what the bits cost
    true magnitude + random phase         no phase information at all
    true magnitude + Griffin-Lim          phase recovered from magnitudes alone (32 iterations from zero)
    true magnitude + true frequency       the true phase *advance* of every bin, integrated from zero: the
                                          per-bin frequency is kept, the absolute phase is thrown away
    decoder magnitude + true phase        the decoder's magnitudes, with the phase it cannot know
    decoder magnitude + true frequency    ... with only the frequency it could, in principle, learn

and, for the design of the next codec, phase recovered from the true magnitudes of LONGER windows (hop 480),
where each partial is its own peak (`tokenizers/phase_vocoder.py`), with the CPU time it takes per 10 s:

    1920 window + phase vocoder           the peak-locked phase vocoder alone
    1920 window + vocoder + Griffin-Lim   ... then 8 Griffin-Lim iterations
    3840 window + vocoder + Griffin-Lim   the same at 6.25 Hz bins

Validation clips only: this is a diagnosis that steers training, not a figure of the shipped codec.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch


def integrated_frequency(spec: torch.Tensor) -> torch.Tensor:
    """(B, F, N) complex -> (B, F, N) phases that advance as `spec`'s do but start from zero at frame 0."""
    advance = torch.angle(spec[..., 1:] * spec[..., :-1].conj())  # (B, F, N - 1): per-bin phase advance
    return torch.cat([torch.zeros_like(advance[..., :1]), advance], dim=-1).cumsum(dim=-1)


def variants(codec, waves: torch.Tensor, seed: int = 0):
    """(name, waveforms, CPU seconds per 10 s of audio or None) for every row of the diagnosis (module docstring)."""
    from musiclm_mini.tokenizers.phase_vocoder import griffin_lim, magnitude_to_wave, phase_from_magnitude

    n_fft, hop, length = codec.cfg.n_fft, codec.cfg.frame_hop, waves.shape[-1]
    window = torch.hann_window(n_fft)
    stft = lambda x: torch.stft(x, n_fft, hop, window=window, return_complex=True)  # (B, F, N + 1)
    istft = lambda s: torch.istft(s, n_fft, hop, window=window, length=length)
    true = stft(waves)
    with torch.no_grad():
        latents = codec._latents(waves)  # (B, T', D) before the quantizer
        decoded = codec.decoder(codec.quantizer(latents).quantized)  # (B, F, N): what the decoder says
        unquantized = codec._synthesize(latents)[..., :length]
    decoded = torch.cat([decoded, decoded[..., -1:]], dim=-1)[..., : true.shape[-1]]  # the frame iSTFT wants
    g = torch.Generator().manual_seed(seed)
    yield "originals", waves, None
    yield "the codec", codec.reconstruct(waves), None
    yield "the codec without its quantizer", unquantized, None
    yield "true magnitude + random phase", istft(torch.polar(true.abs(), 2 * math.pi * torch.rand(true.shape, generator=g))), None
    yield "true magnitude + Griffin-Lim", griffin_lim(true.abs(), n_fft, hop, length, iterations=32), None
    yield "true magnitude + true frequency", istft(torch.polar(true.abs(), integrated_frequency(true))), None
    yield "decoder magnitude + true phase", istft(torch.polar(decoded.abs(), true.angle())), None
    yield "decoder magnitude + true frequency", istft(torch.polar(decoded.abs(), integrated_frequency(true))), None
    per_10s = 10 * codec.cfg.sample_rate / waves.numel()  # CPU seconds for the batch -> per 10 s of audio
    for window, iterations in ((1920, 0), (1920, 8), (3840, 8)):
        mag = torch.stft(waves, window, 480, window=torch.hann_window(window), return_complex=True).abs()
        start = time.process_time()
        if iterations:
            wave = magnitude_to_wave(mag, window, 480, length, iterations)
        else:
            wave = torch.istft(torch.polar(mag, phase_from_magnitude(mag, window, 480)), window, 480,
                               window=torch.hann_window(window), length=length)
        name = f"{window} window + " + ("vocoder + Griffin-Lim" if iterations else "phase vocoder")
        yield name, wave, (time.process_time() - start) * per_10s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clips", type=int, default=8, help="first N validation clips, whole (10 s)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from musiclm_mini.components import load, read_config, checkpoint_dir
    from musiclm_mini.config import get_preset
    from musiclm_mini.data import synthcaps
    from musiclm_mini.evaluation.transcribe import score_against_synthcaps
    from musiclm_mini.files import atomic_write

    preset = get_preset(args.preset)
    codec = load("spectral-codec", preset.name).float().eval()
    waves = synthcaps.split_waveforms(preset, "validation")[: args.clips]
    labels = synthcaps.split_labels(preset, "validation")[: args.clips]
    folder, sr = synthcaps.dataset_dir(preset), preset.data.sample_rate
    start, rows = time.process_time(), []
    for name, audio, seconds in variants(codec, waves):
        f1 = float(np.mean([r["f1"] for r in score_against_synthcaps(audio.numpy(), sr, folder, labels)]))
        rows.append({"variant": name, "note_f1": f1, "cpu_seconds_per_10s": seconds})
        timing = "" if seconds is None else f"   ({seconds:.2f} CPU-s per 10 s)"
        print(f"{name:36s} note F1 {f1:.3f}{timing}", flush=True)
    cpu = (time.process_time() - start) / 60
    print(f"{len(waves)} validation clips, {cpu:.1f} CPU-min")
    if args.json:
        record = {"what": "note F1 (basic-pitch vs SynthCaps scores) of validation clips rebuilt with parts swapped",
                  "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:])),
                  "codec_fingerprint": read_config(checkpoint_dir("spectral-codec", preset.name))["fingerprint"],
                  "split": "validation", "clips": len(waves), "cpu_minutes": cpu, "rows": rows}
        atomic_write(args.json, lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
