"""Chapter 3's codec table: a codec at each depth against Opus, on the same held-out SynthCaps clips.

    python scripts/measure_codec.py --split validation                 # while choosing (default)
    python scripts/measure_codec.py --split test --json codec-test.json  # once, for the record
    python scripts/measure_codec.py --components codec --clips 8 --seconds 4  # a quick look
    python scripts/measure_codec.py --components spectral-codec --codec-run magnitude-codec=runs/magnitude-codec-tiny
                                                       # a training run's checkpoint beside the shipped codec

For the originals, the codec decoded from its first 1, 2, 4, ... levels, and Opus at 6 and 12 kbps
(ffmpeg's libopus), it prints:
  mel distance  Chapter 3's mean |log-mel difference| against the original (lower is better)
  SI-SNR        scale-invariant SNR against the original, dB (a spectral codec invents its phase: low)
  MCC           MuLan similarity of the clip to its own caption, and to the other captions (p: permutation test)
  note F1       basic-pitch's transcription against the notes SynthCaps really rendered (onset within 50 ms)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from musiclm_mini.files import write_record


def systems(codecs: dict, waves: torch.Tensor, sample_rate: int, opus_kbps: tuple[float, ...]):
    """(name, bitrate in kbps, reconstructions (N, T)) for the originals, every codec at every depth, and Opus."""
    from musiclm_mini.tokenizers.codec_eval import default_levels
    from musiclm_mini.tokenizers.opus import opus_batch

    yield "original", None, waves
    for component, codec in codecs.items():
        tokens = torch.cat([codec.encode(w) for w in waves.split(8)])  # (N, Q, T')
        bits = codec.cfg.frame_rate * codec.cfg.rvq.bits_per_code / 1000
        for q in default_levels(codec.cfg.rvq.num_quantizers):
            recon = torch.cat([codec.decode(t[:, :q]) for t in tokens.split(8)])[..., : waves.shape[-1]]
            yield f"{component}, {q} level{'s' if q > 1 else ''}", q * bits, recon
    for kbps in opus_kbps:
        yield f"Opus {kbps:g} kbps", kbps, opus_batch(waves, sample_rate, kbps)


def measure(components: list[str], split: str, clips: int, seconds: float, opus_kbps: tuple[float, ...],
            runs: dict[str, str] | None = None) -> dict:
    from musiclm_mini.components import load
    from musiclm_mini.config import get_preset
    from musiclm_mini.data import synthcaps
    from musiclm_mini.evaluation.transcribe import score_against_synthcaps
    from musiclm_mini.musiclm import audio_adherence
    from musiclm_mini.tokenizers.codec_eval import mel_distance, si_snr

    preset = get_preset("tiny")
    sr = preset.data.sample_rate
    codecs = {name: load(name, preset="tiny") for name in components}
    for name, folder in (runs or {}).items():  # a run's checkpoint: its own config.json says what it is
        codecs[f"{name} ({os.path.basename(os.path.normpath(folder))})"] = load(name, path=folder)
    mulan = load("mulan", preset="tiny")
    waves = synthcaps.split_waveforms(preset, split)[:clips, : int(seconds * sr)]
    labels = synthcaps.split_labels(preset, split)[:clips]
    captions = [r["caption"] for r in labels]
    rows = []
    for name, kbps, recon in systems(codecs, waves, sr, opus_kbps):
        start = time.time()
        adherence = audio_adherence(mulan, recon, captions, permutations=2000)
        notes = score_against_synthcaps(recon.numpy(), sr, synthcaps.dataset_dir(preset), labels)
        rows.append({"system": name, "kbps": kbps,
                     "mel_distance": float(mel_distance(waves, recon, sr).mean()),
                     "si_snr": float(si_snr(waves, recon).mean()),
                     "mcc_own": adherence["mcc"], "mcc_other": adherence["shuffled"], "mcc_p": adherence["p_permutation"],
                     "note_f1": float(np.mean([n["f1"] for n in notes])),
                     "seconds_to_measure": time.time() - start})
    return {"components": components + [f"{n}={f}" for n, f in (runs or {}).items()], "split": split, "clips": len(captions), "seconds": seconds, "rows": rows}


def print_table(result: dict) -> None:
    print(f"{', '.join(result['components'])} on {result['clips']} {result['split']} clips x {result['seconds']:g} s")
    print(f"{'system':<26} {'kbps':>5} {'mel dist':>9} {'SI-SNR':>7} {'MCC own':>8} {'other':>7} {'p':>6} {'note F1':>8}")
    for r in result["rows"]:
        kbps = "" if r["kbps"] is None else f"{r['kbps']:.1f}"
        print(f"{r['system']:<26} {kbps:>5} {r['mel_distance']:9.3f} {r['si_snr']:7.2f} {r['mcc_own']:8.3f} "
              f"{r['mcc_other']:7.3f} {r['mcc_p']:6.3f} {r['note_f1']:8.3f}")


def _run_spec(spec: str) -> tuple[str, str]:
    """'magnitude-codec=runs/magnitude-codec-tiny' -> ('magnitude-codec', 'runs/magnitude-codec-tiny')."""
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"--codec-run wants COMPONENT=DIR, got {spec!r}")
    return name, folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--components", nargs="+", default=["codec", "spectral-codec"], help="codec components to measure")
    parser.add_argument("--codec-run", action="append", default=[], metavar="COMPONENT=DIR",
                        help="also measure a training run's checkpoint, e.g. magnitude-codec=runs/magnitude-codec-tiny")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--opus", type=float, nargs="*", default=(6.0, 12.0), help="Opus bitrates, kbps")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        runs = dict(_run_spec(spec) for spec in args.codec_run)
        result = measure(args.components, args.split, args.clips, args.seconds, tuple(args.opus), runs)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(result)
    write_record(args.json, result, "scripts/measure_codec.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
