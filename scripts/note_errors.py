"""Chapter 3, round 3: which notes does a magnitude codec lose, and which does it add? (validation clips)

    python scripts/note_errors.py --codec-run runs/candidate-checkpoints/magnitude-codec-tiny \
        --json book/data/note-errors-validation.json                     # 8 clips x 10 s, ~3 CPU-min

For the originals, the codec as heard (its magnitudes through the phase vocoder and Griffin-Lim), the codec's
magnitudes with the *true* phase of the original, and the true magnitudes through the same vocoder, it prints
note F1, precision and recall against the notes SynthCaps rendered, and what every heard note is
(`evaluation.transcribe.heard_note_kinds`: found, a fragment of a sounding note, an octave or fifth of one,
other). Validation clips only: it steers training.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from musiclm_mini.files import write_record


def rebuilds(codec, waves: torch.Tensor):
    """(name, waveforms (B, T)) for each row; every rebuild uses the codec's own window and hop."""
    from musiclm_mini.tokenizers.phase_vocoder import magnitude_to_wave

    cfg, length = codec.cfg, waves.shape[-1]
    window = torch.hann_window(cfg.n_fft)
    padded = torch.nn.functional.pad(waves, (0, -length % cfg.hop))
    true = torch.stft(padded, cfg.n_fft, cfg.frame_hop, window=window, return_complex=True)  # (B, F, N + 1)
    with torch.no_grad():
        z = codec.quantizer.decode(codec.encode(waves))  # (B, T', D)
        magnitude = codec.decoder(z)  # (B, F, N)
    magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)[..., : true.shape[-1]]
    samples = padded.shape[-1]
    vocoded = lambda m: magnitude_to_wave(m, cfg.n_fft, cfg.frame_hop, samples, cfg.griffin_lim_iterations)
    yield "originals", waves
    yield "the codec (vocoder + Griffin-Lim)", vocoded(magnitude)[..., :length]
    yield "codec magnitudes + true phase", torch.istft(torch.polar(magnitude, true.angle()), cfg.n_fft, cfg.frame_hop,
                                                       window=window, length=samples)[..., :length]
    yield "true magnitudes + vocoder", vocoded(true.abs())[..., :length]


def measure(run: str, clips: int, seconds: float) -> dict:
    from musiclm_mini.components import load
    from musiclm_mini.config import get_preset
    from musiclm_mini.data import synthcaps
    from musiclm_mini.evaluation.transcribe import ROLES, heard_note_kinds, note_f1, synthcaps_notes, transcribe

    preset = get_preset("tiny")
    sr = preset.data.sample_rate
    codec = load("magnitude-codec", path=run)
    waves = synthcaps.split_waveforms(preset, "validation")[:clips, : int(seconds * sr)]
    labels = synthcaps.split_labels(preset, "validation")[:clips]
    folder = synthcaps.dataset_dir(preset)
    truths = [synthcaps_notes(folder, label, ROLES) for label in labels]
    rows = []
    for name, rebuilt in rebuilds(codec, waves):
        heard = [transcribe(np.asarray(w, np.float32), sr) for w in rebuilt.numpy()]
        scores = [note_f1(t, h) for t, h in zip(truths, heard)]
        kinds = [heard_note_kinds(t, h) for t, h in zip(truths, heard)]
        rows.append({"rebuild": name, **{k: float(np.mean([s[k] for s in scores])) for k in ("f1", "precision", "recall")},
                     "true_notes": int(sum(len(t) for t in truths)), "heard_notes": int(sum(len(h) for h in heard)),
                     "kinds": {k: int(sum(c[k] for c in kinds)) for k in kinds[0]}})
    return {"run": run, "clips": len(labels), "seconds": seconds, "split": "validation", "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec-run", required=True, help="a magnitude-codec checkpoint folder")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        result = measure(args.codec_run, args.clips, args.seconds)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['clips']} validation clips x {result['seconds']:g} s; {result['rows'][0]['true_notes']} true notes")
    print(f"{'rebuild':36s} {'F1':>6s} {'prec.':>6s} {'recall':>6s} {'heard':>6s}  kinds of heard notes")
    for r in result["rows"]:
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items())
        print(f"{r['rebuild']:36s} {r['f1']:6.3f} {r['precision']:6.3f} {r['recall']:6.3f} {r['heard_notes']:6d}  {kinds}")
    write_record(args.json, result, "scripts/note_errors.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
