"""A music tagger trained on real SynthCaps clips: the book's AudioSet classifier (Chapter 7; MusicLM Sec. 4.3).

MusicLM's KLD compares the label posteriors that an AudioSet classifier gives a real clip and a generated
one. AudioSet's labels mean little for SynthCaps, and its classifiers download their weights, so the book
trains its own: a small CNN over log-mel spectrograms, one softmax head per label that every SynthCaps
clip has (`HEADS`): the melody instrument's General MIDI family, drums or not, tempo bucket, mode, mood
and style. Tempo is hard to see in a pooled spectrogram, so the onset envelope's autocorrelation (taken
from the same log-mel) feeds the heads too: a beat every 0.5 s shows up as a peak at lag 0.5 s. Mode is
hard to see in mel bands a few semitones wide, so 12 chroma rows from the same STFT feed a key-invariant
template matcher (see `Tagger`).

    components.load("tagger", "tiny")   -> Tagger, the shipped one (a registered component, like MuLan)
    python -m musiclm_mini.train tagger --preset tiny                        (train_tagger.py: the recipe)
    predict(tagger, waves, sr)          -> {head: (N, C) posteriors}   (what `kld.kld` compares)
    accuracy(posteriors, labels)        -> {head: share right}          (held-out figures)
    asked_got(posteriors, labels)       -> "asked for X, got X" rates per label value
    training_record(folder)             -> how it was trained and its held-out figures (metrics.json)

`TaggerConfig` is what the network is (STFT, mel, channels, lags, chroma range, heads and their classes,
and the calibration temperatures); `tagger_config(preset)` gives the same one for every preset: the
tagger is a measuring instrument, not part of the model being scaled, so a colab or paper run is judged
by the same tagger as tiny. How it was trained (epochs, figures, command, seconds) is not what it *is*:
that lives in `metrics.json` beside the weights, as for every other component.

A tagger is a judge with its own errors: a head that is right 70% of the time on real clips caps what any
"asked for X, got X" rate can show, so every table prints the real clips' rates beside the generated ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError
from .transcribe import resample

HEADS = ("family", "drums", "tempo_bucket", "mode", "mood", "style")


def head_classes() -> dict[str, list[str]]:
    """Every value each head can take, from SynthCaps' own generator (not from whichever clips were seen)."""
    from ..data import captions, render

    melody_programs = {p for style in render.STYLES.values() for ens in style.ensembles for p in ens.melody}
    return {"family": sorted({captions.gm_family(p) for p in melody_programs}), "drums": ["drums", "no drums"],
            "tempo_bucket": [name for name, _, _ in captions.TEMPO_BUCKETS], "mode": ["major", "minor"],
            "mood": list(captions.MOOD_WORDS), "style": list(render.STYLES)}


@dataclass(frozen=True)
class TaggerConfig:
    """What the `tagger` component is (Chapter 7): its front end, its CNN and its heads.

    `classes` (head -> class names, in logit order) decides the heads' sizes, so it is part of the
    identity; `temperature` (head -> T, fitted on validation clips after training) only rescales logits,
    so a checkpoint with other temperatures is still the same network (`components.architecture`).
    Dicts, not tuples: config.json stays readable as {"mode": ["major", "minor"], ...}.
    """

    sample_rate: int = 24_000
    n_fft: int = 2048
    hop: int = 480
    n_mels: int = 64
    f_min: float = 30.0
    f_max: float = 11_000.0
    channels: tuple[int, ...] = (16, 32, 64, 64)
    min_lag_s: float = 0.2  # onset autocorrelation: tempi from 300 bpm ...
    max_lag_s: float = 2.0  # ... down to 30 bpm
    chroma_hz: tuple[float, float] = (55.0, 4000.0)  # bins outside are too coarse (low) or mostly overtones (high)
    classes: dict[str, list[str]] = field(default_factory=lambda: head_classes())
    temperature: dict[str, float] = field(default_factory=dict, metadata={"identity": False})

    def __post_init__(self):
        # config.json is written with sorted keys; keep the heads in `HEADS` order whatever the JSON's order,
        # so predictions, tables and accuracies always list family, drums, tempo, mode, mood, style
        rank = {h: i for i, h in enumerate(HEADS)}
        order = sorted(self.classes, key=lambda h: rank.get(h, len(HEADS)))
        object.__setattr__(self, "classes", {h: list(self.classes[h]) for h in order})

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.classes)


def tagger_config(preset) -> TaggerConfig:
    """The `tagger` of `preset` (Chapter 7; `components.py` loads and ships it): the same for every preset.

    An evaluation tool must not change with the model it judges: colab and paper are measured by the
    tiny tagger's architecture (SynthCaps' labels and 24 kHz are the same at every preset).
    """
    return TaggerConfig()


def training_record(folder) -> dict:
    """How a tagger checkpoint was trained and its held-out figures: its `metrics.json` (Chapter 7).

    Keys: epochs, best_epoch, train_clips, train_seconds, seed, lr, batch_size, crop_seconds, loss_curve,
    val_accuracy, test_clips, test_accuracy, majority_baseline, command (what `train_tagger` writes).
    """
    path = Path(folder) / "metrics.json"
    if not path.exists():
        raise CheckpointError(f"{folder} has no metrics.json: the tagger's training record is written there")
    return json.loads(path.read_text())


def label_value(row: dict, head: str) -> str:
    """The class name of one clip's label for a head (drums: "drums" / "no drums")."""
    if head == "drums":
        return "drums" if row["drums"] else "no drums"
    return str(row[head])


def chroma_map(sample_rate: int, n_fft: int, lo: float, hi: float) -> torch.Tensor:
    """(n_fft // 2 + 1, 12) 0/1 matrix: each STFT bin between lo and hi Hz to its nearest pitch class (C = 0)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    out = np.zeros((len(freqs), 12), np.float32)
    keep = (freqs >= lo) & (freqs <= hi)
    out[keep, np.round(12 * np.log2(freqs[keep] / 440.0) + 69).astype(int) % 12] = 1.0
    return torch.tensor(out)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    edges = 700.0 * (10 ** (np.linspace(mel(f_min), mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)[:, None]
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    fb = np.clip(np.minimum((freqs - lower) / (center - lower), (upper - freqs) / (upper - center)), 0, None)
    return torch.tensor(fb, dtype=torch.float32)


class Tagger(nn.Module):
    """Log-mel CNN, onset autocorrelation and a key-invariant chroma branch; a linear head per label (Chapter 7).

    The chroma branch hears mode: the clip's average pitch-class profile is matched against 16 learned
    12-note templates at all 12 transpositions (a circular convolution), keeping each template's best
    match, so "minor" is recognized in any key (a learned Krumhansl-Schmuckler key finder).
    """

    def __init__(self, config: TaggerConfig):
        super().__init__()
        self.cfg = c = config
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max), persistent=False)
        layers, prev = [nn.BatchNorm2d(1)], 1
        for ch in c.channels:
            layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d(2)]
            prev = ch
        self.cnn = nn.Sequential(*layers)
        fps = c.sample_rate / c.hop
        self.lags = (max(1, round(c.min_lag_s * fps)), round(c.max_lag_s * fps))
        self.rhythm = nn.Sequential(nn.Linear(self.lags[1] - self.lags[0] + 1, 32), nn.ReLU())
        self.register_buffer("chroma_fb", chroma_map(c.sample_rate, c.n_fft, *c.chroma_hz), persistent=False)
        self.templates = nn.Conv1d(1, 16, 12, padding=6, padding_mode="circular", bias=False)
        self.heads = nn.ModuleDict({h: nn.Linear(2 * prev + 32 + 16, len(v)) for h, v in c.classes.items()})

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform at the tagger's rate -> (B, n_mels + 12, frames): natural-log mel power, then
        12 rows of log chroma (power per pitch class), both from one STFT."""
        c = self.cfg
        spec = torch.stft(wave, c.n_fft, c.hop, window=self.window, return_complex=True).abs() ** 2
        bands = torch.einsum("bft,fm->bmt", spec, torch.cat([self.fb, self.chroma_fb], 1))
        return torch.log(bands + 1e-6)

    def onset_autocorrelation(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalized autocorrelation of the spectral-flux onset envelope at lags min_lag..max_lag frames."""
        env = F.relu(mel[:, :, 1:] - mel[:, :, :-1]).mean(1)
        env = env - env.mean(1, keepdim=True)
        lo, hi = self.lags
        env = F.pad(env, (0, max(0, hi + 1 - env.shape[1])))
        energy = (env * env).mean(1, keepdim=True) + 1e-8
        ac = [(env[:, : env.shape[1] - lag] * env[:, lag:]).mean(1, keepdim=True) for lag in range(lo, hi + 1)]
        return torch.cat(ac, 1) / energy

    def key_invariant_chroma(self, chroma: torch.Tensor) -> torch.Tensor:
        """(B, 12, frames) log chroma -> (B, 16): each template's best match over the 12 transpositions."""
        profile = torch.softmax(chroma, 1).mean(2, keepdim=True).transpose(1, 2)  # (B, 1, 12), sums to 1
        profile = 12 * profile - 1  # 0 for a flat profile
        return F.relu(self.templates(profile)[:, :, :12].amax(2))

    def forward_mel(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head from `log_mel`'s (B, n_mels + 12, frames) features."""
        mel, chroma = mel[:, :-12], mel[:, -12:]
        x = self.cnn(mel[:, None])
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        z = torch.cat([pooled, self.rhythm(self.onset_autocorrelation(mel)), self.key_invariant_chroma(chroma)], 1)
        return {h: head(z) for h, head in self.heads.items()}

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_mel(self.log_mel(wave))


# ---------------------------------------------------------------------------------------------
# Using it
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(tagger: Tagger, waves, sample_rate: int, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Posteriors {head: (N, C)} for (N, T) clips at any sample rate (resampled to the tagger's) (Chapter 7).

    Logits are divided by each head's calibration temperature (`cfg.temperature`, set by training
    on the validation clips), so a posterior of 0.9 means right about 9 times in 10, not "always sure".
    """
    was_training = tagger.training
    tagger.eval()
    rate = tagger.cfg.sample_rate
    out = {h: [] for h in tagger.heads}
    items = waves if isinstance(waves, torch.Tensor) else [np.asarray(w, np.float32) for w in waves]
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        if sample_rate != rate:
            chunk = [resample(np.asarray(w), sample_rate, rate) for w in chunk]
        batch = torch.as_tensor(np.stack([np.asarray(w, np.float32) for w in chunk]))
        temperature = tagger.cfg.temperature
        for h, logits in tagger(batch).items():
            out[h].append(torch.softmax(logits / temperature.get(h, 1.0), -1).numpy().astype(np.float64))
    tagger.train(was_training)
    return {h: np.concatenate(v) for h, v in out.items()}


def classes_of(posteriors: dict, classes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Arg-max class name per clip and head."""
    return {h: [classes[h][i] for i in p.argmax(1)] for h, p in posteriors.items()}


def accuracy(posteriors: dict[str, np.ndarray], labels: list[dict], classes: dict | None = None) -> dict[str, float]:
    """Share of clips whose arg-max class is the label, per head (Chapter 7)."""
    classes = classes or head_classes()
    guesses = classes_of(posteriors, classes)
    return {h: float(np.mean([g == label_value(r, h) for g, r in zip(guesses[h], labels)])) for h in posteriors}


def majority_baseline(train_labels: list[dict], test_labels: list[dict], heads=HEADS) -> dict[str, float]:
    """Accuracy of always answering each head's most common training class: what ignoring the audio scores."""
    out = {}
    for h in heads:
        values = [label_value(r, h) for r in train_labels]
        top = max(sorted(set(values)), key=values.count)
        out[h] = float(np.mean([label_value(r, h) == top for r in test_labels]))
    return out


def asked_got(posteriors: dict[str, np.ndarray], asked: list[dict], classes: dict | None = None) -> dict:
    """"Asked for X, got X" per head and value: {head: {value: {"asked": n, "got": k, "rate": k / n}}}.

    `asked` holds the label rows of the captions the clips were made from (for real clips, their own
    labels). A clip "got X" when the tagger's arg-max for that head is X (Chapter 7).
    """
    classes = classes or head_classes()
    guesses = classes_of(posteriors, classes)
    table = {}
    for h in posteriors:
        rows = {}
        for guess, row in zip(guesses[h], asked):
            cell = rows.setdefault(label_value(row, h), {"asked": 0, "got": 0})
            cell["asked"] += 1
            cell["got"] += int(guess == label_value(row, h))
        table[h] = {v: {**c, "rate": c["got"] / c["asked"]} for v, c in sorted(rows.items())}
    return table


def format_asked_got(tables: dict[str, dict]) -> str:
    """Text table, one row per head value, one column per set of clips ({"real": table, "generated": ...})."""
    names = list(tables)
    lines = [f"{'label':28s}" + "".join(f"{n:>16s}" for n in names)]
    keys = dict.fromkeys((h, v) for t in tables.values() for h in t for v in t[h])
    for h, v in keys:
        cells = []
        for n in names:
            c = tables[n].get(h, {}).get(v)
            cells.append(f"{c['rate']:6.2f} ({c['got']:3d}/{c['asked']:3d})" if c else f"{'-':>16s}")
        lines.append(f"{h + ': ' + v:28s}" + "".join(f"{s:>16s}" for s in cells))
    return "\n".join(lines)
