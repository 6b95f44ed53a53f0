"""Training the Chapter 7 tagger on real SynthCaps clips: the `tagger` component (MusicLM Sec. 4.3).

    python -m musiclm_mini.train tagger --preset tiny                  # the shipped tagger's recipe (recipes.py)
    python -m musiclm_mini.train tagger --preset tiny --data synthcaps --steps 480    # the 256 real clips alone
    python -m musiclm_mini.evaluation.train_tagger --data data/synthcaps-tiny --extra data/synthcaps-tiny-extra \
        --out runs/tagger-tiny-extra --epochs 15       # the same training from any saved SynthCaps folders

The recipe: `--data synthcaps+extra` (SynthCaps' 256 training clips plus Chapter 6's 768 extra arrangements
of the same training scores), batch 16, peak lr 3e-3, 960 steps = 15 epochs of 64 steps, one CPU thread:
about 5 minutes and test accuracy family 1.00 / drums 1.00 / tempo 0.91 / mode 0.94 / mood 0.81 / style
1.00 (32 test clips). The real clips alone (30 epochs of 16 steps, 3 min) reach 0.84 / 1.00 / 0.81 / 0.72 /
0.47 / 0.84. Training sees random 4 s crops of whole-clip labels, validates on whole clips after every
epoch (not every `--val-every` steps: an epoch is a few seconds), keeps the epoch with the best mean
validation accuracy, calibrates each head's temperature on validation, then prints held-out *test*
accuracy per head beside the majority-class baseline (what a tagger that ignores the audio scores) and
the "asked for X, got X" table of the real test clips. One CPU thread, seeded: the same command gives
the same weights on the same machine. It trains in one go on the CPU (no `--resume`; `--device` is not
used: five minutes do not need a GPU).

The run folder is a component checkpoint (`components.load("tagger", "tiny", path=out)`): model.safetensors
and config.json (`tagger.TaggerConfig`), written atomically by `checkpoint.save_checkpoint`, and
metrics.json, the training record and held-out figures (`tagger.training_record`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from . import tagger
from .tagger import TaggerConfig

TRAINING_DATA = ("synthcaps", "synthcaps+extra")
CROP_SECONDS = 4.0  # more views of few clips; long enough for two beats at the slowest tempo


def _targets(labels: list[dict], classes: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    return {h: torch.tensor([v.index(tagger.label_value(r, h)) for r in labels]) for h, v in classes.items()}


def train_tagger(train_waves, train_labels: list[dict], val_waves=None, val_labels=None, sample_rate: int = 24_000,
                 heads=tagger.HEADS, epochs: int = 30, batch_size: int = 16, lr: float = 3e-3,
                 crop_seconds: float = CROP_SECONDS, seed: int = 0, verbose: bool = False, steps: int | None = None,
                 config: TaggerConfig | None = None, **overrides) -> tagger.Tagger:
    """Train a tagger on (N, T) clips and their SynthCaps label rows; seeded, one thread (Chapter 7).

    `config` (default `TaggerConfig()`), with `overrides` of its fields, restricted to `heads` and set
    to the clips' `sample_rate`. `steps`, when given, replaces `epochs`: that many optimisation steps in
    shuffled passes over the clips (the last pass may be partial). Each step sees a random
    `crop_seconds` crop of each clip; validation uses whole clips, and the epoch with the best mean
    validation accuracy is kept. Log-mels are computed once up front. The training record (epochs,
    best epoch, validation accuracy, seconds, ...) is left in `model.training_record`, not in the config.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base, all_classes = config or TaggerConfig(), tagger.head_classes()
    given = overrides.pop("classes", base.classes)
    classes = {h: list(given.get(h, all_classes.get(h))) for h in heads}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}  # JSON-ish lists
    model = tagger.Tagger(dataclasses.replace(base, **overrides, sample_rate=sample_rate, classes=classes,
                                              temperature={}))
    with torch.no_grad():
        mels = torch.cat([model.log_mel(torch.as_tensor(b, dtype=torch.float32))
                          for b in torch.as_tensor(train_waves).split(32)])
    targets = _targets(train_labels, classes)
    crop = min(mels.shape[-1], max(8, round(crop_seconds * sample_rate / model.cfg.hop)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    per_epoch = math.ceil(len(mels) / batch_size)
    total = steps if steps is not None else epochs * per_epoch
    epochs = math.ceil(total / per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.15)
    best, best_state, history, start, done = -1.0, None, [], time.time(), 0
    record = {}
    for epoch in range(epochs):
        model.train()
        order, total_loss, seen = torch.randperm(len(mels), generator=gen), 0.0, 0
        for i in range(0, len(order), batch_size):
            if done == total:  # `steps` ended inside this pass
                break
            idx = order[i:i + batch_size]
            offsets = torch.randint(0, mels.shape[-1] - crop + 1, (len(idx),), generator=gen)
            batch = torch.stack([mels[j, :, o:o + crop] for j, o in zip(idx.tolist(), offsets.tolist())])
            logits = model.forward_mel(batch)
            loss = sum(F.cross_entropy(logits[h], targets[h][idx]) for h in classes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            total_loss, seen = total_loss + float(loss.detach()) * len(idx), seen + len(idx)
        entry = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1)}
        if val_waves is not None:
            acc = tagger.accuracy(tagger.predict(model, val_waves, sample_rate), val_labels)
            entry["val_accuracy"] = acc
            score = float(np.mean(list(acc.values())))
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
                record = {"best_epoch": epoch + 1, "val_accuracy": acc}
        history.append(entry)
        if verbose:
            print(f"epoch {epoch + 1:3d}  loss {entry['loss']:.3f}  "
                  + "  ".join(f"{h} {a:.2f}" for h, a in entry.get("val_accuracy", {}).items()), flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if val_waves is not None:
        model.cfg = dataclasses.replace(model.cfg, temperature=fit_temperature(model, val_waves, val_labels, sample_rate))
    model.training_record = {**record, "epochs": epochs, "steps": done, "train_clips": len(mels),
                             "train_seconds": round(time.time() - start, 1), "seed": seed, "lr": lr,
                             "batch_size": batch_size, "crop_seconds": crop_seconds,
                             "loss_curve": [round(r["loss"], 4) for r in history]}
    return model


def fit_temperature(model: tagger.Tagger, waves, labels: list[dict], sample_rate: int) -> dict[str, float]:
    """Per-head temperature T minimizing the negative log-likelihood of held-out labels (Guo et al. 2017).

    A network trained to zero loss is over-confident: its wrong answers come with posteriors near 0 for
    the truth, and KL divergences blow up (log 1e-6 ~ -14 nats). Dividing logits by T > 1 softens them
    without changing any arg-max, so accuracies stay as they were. T is searched in [1, 20]: on a few
    dozen validation clips that a head gets all right, the likelihood would otherwise push T toward 0.
    """
    if sample_rate != model.cfg.sample_rate:
        raise ValueError("fit_temperature needs clips at the tagger's own sample rate")
    with torch.no_grad():
        logits = [model(batch) for batch in torch.as_tensor(waves, dtype=torch.float32).split(8)]
    targets = _targets(labels, model.cfg.classes)
    grid = np.exp(np.linspace(0.0, np.log(20.0), 80))  # soften only: 32 clips cannot justify sharpening
    out = {}
    for h in model.heads:
        z = torch.cat([b[h] for b in logits]).double()
        nll = [float(F.cross_entropy(z / t, targets[h])) for t in grid]
        out[h] = round(float(grid[int(np.argmin(nll))]), 3)
    return out


# ---------------------------------------------------------------------------------------------
# Data, measuring, saving: shared by both commands
# ---------------------------------------------------------------------------------------------
def load_split(dataset_dir, split: str) -> tuple[torch.Tensor, list[dict]]:
    """(N, T) waveforms and label rows of one split of a saved SynthCaps (Chapter 1's loaders)."""
    from ..data import synthcaps

    return synthcaps.waveforms_from_dir(dataset_dir, split), synthcaps.labels_from_dir(dataset_dir, split)


def with_extra(train_w: torch.Tensor, train_l: list[dict], data_dir, extra_dir) -> tuple[torch.Tensor, list[dict]]:
    """The training split plus the extra arrangements' (appended, in that order); refuses any extra clip of a
    score that is not a training score, which would leak validation or test music into training."""
    sources = json.loads((Path(data_dir) / "sources.json").read_text())
    extra_w, extra_l = load_split(extra_dir, "train")
    if any(sources.get(r["source_id"]) != "train" for r in extra_l):
        raise ValueError(f"{extra_dir} holds clips of non-training scores: they would leak into the test")
    return torch.cat([train_w, extra_w]), train_l + extra_l


def fit_measure_save(data_dir, extra_dir, out, preset_name: str, command: str, data: str, steps: int | None = None,
                     epochs: int = 30, batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
                     verbose: bool = True) -> dict:
    """Train on a saved SynthCaps (+ extra arrangements), measure on its test split, write the checkpoint of
    component `tagger` and its metrics.json into `out` (Chapter 7). Returns the metrics."""
    from ..checkpoint import save_checkpoint
    from ..components import checkpoint_config
    from ..config import get_preset
    from ..files import atomic_write

    train_w, train_l = load_split(data_dir, "train")
    if extra_dir is not None:
        train_w, train_l = with_extra(train_w, train_l, data_dir, extra_dir)
    val_w, val_l = load_split(data_dir, "validation")
    test_w, test_l = load_split(data_dir, "test")
    rate = json.loads((Path(data_dir) / "config.json").read_text())["sample_rate"]
    config = tagger.tagger_config(get_preset(preset_name))
    if rate != config.sample_rate:  # the preset's tagger hears 24 kHz; another rate would be another network
        raise ValueError(f"{data_dir} is at {rate} Hz but the {preset_name} tagger at {config.sample_rate} Hz")
    model = train_tagger(train_w, train_l, val_w, val_l, sample_rate=rate, epochs=epochs, steps=steps,
                         batch_size=batch_size, lr=lr, seed=seed, verbose=verbose, config=config)
    post = tagger.predict(model, test_w, rate)
    metrics = {"preset": preset_name, "data": data, **model.training_record,
               "test_accuracy": tagger.accuracy(post, test_l), "test_clips": len(test_l),
               "majority_baseline": tagger.majority_baseline(train_l, test_l, tuple(post)), "command": command}
    save_checkpoint(out, model.state_dict(), checkpoint_config("tagger", model.cfg, preset_name))
    atomic_write(Path(out) / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=1) + "\n"))
    if verbose:
        print(f"{'head':14s} {'test acc':>9s} {'majority':>9s}   (test clips: {len(test_l)})")
        for h, a in metrics["test_accuracy"].items():
            print(f"{h:14s} {a:9.3f} {metrics['majority_baseline'][h]:9.3f}")
        print(tagger.format_asked_got({"real test clips": tagger.asked_got(post, test_l)}))
        print(f"saved to {out} after {metrics['train_seconds']} s of training")
    return metrics


# ---------------------------------------------------------------------------------------------
# The two commands
# ---------------------------------------------------------------------------------------------
def train_tagger_component(preset, args, runtime) -> dict:
    """The `tagger` subcommand of `python -m musiclm_mini.train` (Chapter 7): the preset's SynthCaps.

    `--steps`, `--batch-size`, `--lr`, `--seed` and `--data` as for every component (the recipe fills
    what is left out); the data sets are generated first if missing.
    """
    from ..data import synthcaps

    if args.data not in TRAINING_DATA:
        raise ValueError(f"--data {args.data}: the tagger learns SynthCaps' labels, choose {' or '.join(TRAINING_DATA)}")
    if args.resume or args.stop_at is not None or args.init is not None:
        raise ValueError("the tagger trains in one go (minutes on a CPU): --resume, --stop-at and --init do not apply")
    if runtime.distributed:
        raise ValueError("the tagger trains in one process on the CPU: run it without torchrun")
    tc, extra = preset.train, None
    if args.data == "synthcaps+extra":
        from ..train.stages import EXTRA_VARIANTS_PER_SCORE  # the same extra arrangements as the stages'

        extra = synthcaps.ensure_extra_variants(preset, EXTRA_VARIANTS_PER_SCORE, verbose=not args.quiet)
    command = (f"python -m musiclm_mini.train tagger --preset {preset.name} --data {args.data} --steps {tc.steps} "
               f"--batch-size {tc.batch_size} --lr {tc.learning_rate:g} --seed {tc.seed}")
    return fit_measure_save(synthcaps.ensure_synthcaps(preset), extra, args.out, preset.name, command, args.data,
                            steps=tc.steps, batch_size=tc.batch_size, lr=tc.learning_rate, seed=tc.seed,
                            verbose=not args.quiet)


def main(argv=None) -> dict:
    """The older command, on any saved SynthCaps folders; writes the same component checkpoint (Chapter 7)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Train Chapter 7's SynthCaps tagger "
                                     "(or: python -m musiclm_mini.train tagger --preset tiny).")
    parser.add_argument("--data", default="data/synthcaps-tiny", help="a saved SynthCaps folder")
    parser.add_argument("--out", default="runs/tagger-tiny")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="tiny", help="whose tagger architecture (the same for every preset)")
    parser.add_argument("--extra", default=None, help="also train on a saved set of extra variants of the "
                        "training scores (Chapter 6's data/synthcaps-<preset>-extra; train split only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m musiclm_mini.evaluation.train_tagger " + " ".join(sys.argv[1:] if argv is None else argv)
    return fit_measure_save(args.data, args.extra, args.out, args.preset, command,
                            "synthcaps+extra" if args.extra else "synthcaps", epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
