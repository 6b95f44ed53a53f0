"""Which tokens carry musical content, which carry timbre? Linear probes on held-out clips (Chapter 4).

Paper: MusicLM Sec. 3.1 (semantic tokens), after AudioLM Sec. 3.

AudioLM's claim is that w2v-BERT tokens capture *what is played* (pitch, harmony, rhythm) while
codec tokens capture *how it sounds*. We test the claim the simplest way: turn each clip's token
sequence into a fixed-length vector (a histogram of tokens and of token pairs), fit a logistic
regression on the training clips to predict a label, and score it on test clips it never saw.
Content labels (key, mode, tempo) and timbre labels (instrument) are probed alike; a tokenizer
"carries" a label if its probe beats the majority-class baseline.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def token_histograms(tokens: Tensor, vocab_size: int, bigram_buckets: int = 0) -> np.ndarray:
    """Bag of tokens per clip: (N, T') long -> (N, vocab_size [+ bigram_buckets]) frequencies (Chapter 4).

    With `bigram_buckets` > 0, consecutive pairs (a, b) are hashed into that many extra bins: the
    order of tokens, hence rhythm and melody, then reaches the probe too.
    """
    tokens = torch.as_tensor(tokens).long()
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"token_histograms expects tokens (N, T') with T' >= 2, got {tuple(tokens.shape)}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"tokens must lie in [0, {vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
    N, T = tokens.shape
    hist = torch.zeros(N, vocab_size).scatter_add_(1, tokens, torch.ones(N, T)) / T
    if bigram_buckets <= 0:
        return hist.numpy()
    pairs = (tokens[:, :-1] * vocab_size + tokens[:, 1:]) * 2_654_435_761 % bigram_buckets  # (N, T'-1)
    big = torch.zeros(N, bigram_buckets).scatter_add_(1, pairs, torch.ones(N, T - 1)) / (T - 1)
    return torch.cat([hist, big], dim=1).numpy()


def probe_accuracy(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence,
                   C: float = 1.0, seed: int = 0) -> dict:
    """Logistic regression fitted on train, scored on test (Chapter 4).

    -> {"accuracy", "majority": accuracy of always answering the most frequent training label,
    "n_test", "n_classes"}. Test labels never seen in training count as errors.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("probe_accuracy: features and labels differ in length")
    values, counts = np.unique(train_y, return_counts=True)
    majority = float(np.mean(test_y == values[counts.argmax()]))
    if len(values) < 2:  # nothing to learn: the probe can only answer the one label
        return {"accuracy": majority, "majority": majority, "n_test": len(test_y), "n_classes": 1}
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=3000, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    accuracy = float(np.mean(clf.predict(scaler.transform(test_x)) == test_y))
    return {"accuracy": accuracy, "majority": majority, "n_test": len(test_y), "n_classes": len(values)}


def format_probe_table(rows: list[dict]) -> str:
    """The rows of `synthcaps_probes` as a fixed-width table, accuracies to 2 decimals (Chapter 4)."""
    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    tasks = list(dict.fromkeys((r["task"], r.get("level")) for r in rows))
    by = {(r["tokenizer"], (r["task"], r.get("level"))): r for r in rows}
    lines = [f"{'task':<28}{'kind':<9}{'classes':>8}{'majority':>10}" + "".join(f"{n:>12}" for n in names)]
    for t in tasks:
        first = by[(names[0], t)]
        label = f"{t[0]} ({t[1]})" if t[1] else t[0]
        line = f"{label:<28}{first['kind']:<9}{first['n_classes']:>8}{first['majority']:>10.2f}"
        lines.append(line + "".join(f"{by[(n, t)]['accuracy']:>12.2f}" for n in names))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Frame-level probes: what is sounding in each frame
# ---------------------------------------------------------------------------------------------
ROLES = ("melody", "harmony", "bass")


def synthcaps_notes(preset, split: str) -> list[dict[str, np.ndarray]]:
    """The notes of every clip of a SynthCaps split: [{role: (N, 4) start s, end s, pitch, velocity}] (Chapter 4).

    SynthCaps stores audio and labels, not notes, so each clip's arrangement is replayed from its
    seed with the generator's own functions and checked against the stored labels (a mismatch
    raises). Slow the first time (music21 parses each score); cached as an .npy file beside the data.
    """
    import dataclasses

    from ..data import render, scores, synthcaps
    from ..files import build_once

    cache = synthcaps.ensure_synthcaps(preset) / f"semantic-notes-{split}.npy"
    labels = synthcaps.split_labels(preset, split)

    def write(tmp) -> None:  # only when the cache is missing; another process waits meanwhile (build_once)
        cfg = dataclasses.asdict(preset.data)
        order = {sid: i for i, sid in enumerate(scores.list_sources(cfg["seed"], 4 * cfg["num_clips"] + 16))}
        rows, parsed = [], {}
        for c, lab in enumerate(labels):
            sid = lab["source_id"]
            score = parsed[sid] = parsed.get(sid) or scores.parse_score(sid)
            rng = np.random.default_rng([cfg["seed"], order[sid], int(lab["clip_id"].rsplit("-", 1)[1])])
            variant = synthcaps.sample_variant(score, cfg["clip_seconds"], rng)
            if (variant["tempo_bpm"], variant["style"], variant["mode"], variant["start_bar"]) != \
                    (lab["tempo_bpm"], lab["style"], lab["mode"], lab["start_bar"]):
                raise RuntimeError(f"cannot replay the notes of clip {lab['clip_id']}: SynthCaps changed")
            parts = render.arrange(score, variant, cfg["clip_seconds"], rng)
            for role, part in enumerate(parts[: len(ROLES)]):  # melody, harmony, bass; drums last
                n = part["notes"]
                rows.append(np.column_stack([np.full(len(n), c), np.full(len(n), role), n]))
        table = np.concatenate(rows).astype(np.float32)  # (M, 6): clip, role, start, end, pitch, velocity
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
            np.save(f, table)

    table = np.load(build_once(cache, write))
    return [{role: table[(table[:, 0] == c) & (table[:, 1] == r), 2:] for r, role in enumerate(ROLES)}
            for c in range(len(labels))]


def sounding_pitch(notes: np.ndarray, frames: int, frame_rate: float, highest: bool = True) -> np.ndarray:
    """MIDI pitch sounding at the centre of each frame, highest (or lowest) if several; -1 if none (Chapter 4).

    notes (N, >=3) start s, end s, pitch -> (frames,) int.
    """
    if len(notes) == 0:
        return np.full(frames, -1)
    centres = (np.arange(frames) + 0.5) / frame_rate  # (T',)
    on = (notes[None, :, 0] <= centres[:, None]) & (centres[:, None] < notes[None, :, 1])  # (T', N)
    pitch = np.where(on, notes[None, :, 2], -np.inf if highest else np.inf)
    best = pitch.max(1) if highest else pitch.min(1)
    return np.where(np.isfinite(best), best, -1).astype(int)


def context_onehots(tokens: Tensor, vocab_size: int, width: int = 1):
    """One-hot of each frame's token and its `width` neighbours on both sides, sparse (Chapter 4).

    tokens (N, T') -> scipy CSR (N * T', (2 width + 1) * vocab_size); clip edges see no neighbour.
    """
    from scipy.sparse import csr_matrix

    tokens = torch.as_tensor(tokens).long().numpy()
    N, T = tokens.shape
    rows, cols = [], []
    for k, shift in enumerate(range(-width, width + 1)):
        t = np.arange(T)
        valid = (t + shift >= 0) & (t + shift < T)
        r = (np.arange(N)[:, None] * T + t[None, valid]).ravel()
        c = (tokens[:, t[valid] + shift] + k * vocab_size).ravel()
        rows.append(r)
        cols.append(c)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N * T, (2 * width + 1) * vocab_size))


def frame_probe(train_x, train_y: np.ndarray, test_x, test_y: np.ndarray, C: float = 1.0) -> dict:
    """Logistic regression on frames; frames labelled -1 are left out (Chapter 4). Same keys as `probe_accuracy`."""
    from sklearn.linear_model import LogisticRegression

    keep_tr, keep_te = train_y >= 0, test_y >= 0
    train_x, train_y, test_x, test_y = train_x[keep_tr], train_y[keep_tr], test_x[keep_te], test_y[keep_te]
    values, counts = np.unique(train_y, return_counts=True)
    majority = float(np.mean(test_y == values[counts.argmax()]))
    clf = LogisticRegression(C=C, max_iter=2000).fit(train_x, train_y)
    return {"accuracy": float(np.mean(clf.predict(test_x) == test_y)), "majority": majority,
            "n_test": int(len(test_y)), "n_classes": int(len(values))}


# ---------------------------------------------------------------------------------------------
# The chapter's measurement on SynthCaps
# ---------------------------------------------------------------------------------------------
def _tonic(label: dict) -> int:
    """Pitch class of the key's tonic (major keys are spelled Db, minor ones C#: same class)."""
    from ..data.synthcaps import KEY_NAMES

    name, mode = label["key"].split()
    return KEY_NAMES[mode].index(name)


CLIP_TASKS = {  # name -> (kind, label of a clip)
    "key tonic": ("content", _tonic),
    "mode": ("content", lambda d: d["mode"]),
    "tempo bucket": ("content", lambda d: d["tempo_bucket"]),
    "instrument": ("timbre", lambda d: d["family"]),
    "drums": ("timbre", lambda d: d["drums"]),
}


def frame_targets(notes: list[dict], labels: list[dict], frames: int, frame_rate: float) -> dict[str, np.ndarray]:
    """Per-frame labels of N clips, each (N * T',), -1 where undefined (Chapter 4).

    melody pitch class / bass pitch class: of the highest melody / lowest bass note sounding at the
    frame's centre; onset: whether any melody, harmony or bass note starts within the frame;
    instrument: the melody's instrument family, on the frames where the melody sounds.
    """
    families = sorted({d["family"] for d in labels})
    out = {"melody pitch class": [], "bass pitch class": [], "onset": [], "instrument": []}
    for clip, lab in zip(notes, labels):
        mel = sounding_pitch(clip["melody"], frames, frame_rate, highest=True)
        bass = sounding_pitch(clip["bass"], frames, frame_rate, highest=False)
        starts = np.concatenate([clip[r][:, 0] for r in ROLES])
        onset = np.zeros(frames, int)
        idx = np.floor(starts * frame_rate).astype(int)
        onset[idx[(idx >= 0) & (idx < frames)]] = 1
        out["melody pitch class"].append(np.where(mel >= 0, mel % 12, -1))
        out["bass pitch class"].append(np.where(bass >= 0, bass % 12, -1))
        out["onset"].append(onset)
        out["instrument"].append(np.where(mel >= 0, families.index(lab["family"]), -1))
    return {k: np.concatenate(v) for k, v in out.items()}


FRAME_KINDS = {"melody pitch class": "content", "bass pitch class": "content", "onset": "content",
               "instrument": "timbre"}


def synthcaps_probes(preset, tokenizers: dict, train_split: str = "train", test_split: str = "test",
                     frame_level: bool = True, tokens: dict | None = None) -> list[dict]:
    """Content-versus-timbre probes of each tokenizer on SynthCaps, scored on `test_split` (Chapter 4).

    tokenizers: name -> object with `tokenize(waves) -> (N, T')` and `vocab_size`. Clip-level tasks
    (`CLIP_TASKS`) probe bags of tokens and token pairs; frame-level tasks (`FRAME_KINDS`) probe each
    frame's token with its two neighbours against what the notes say is sounding there.
    `tokens` (name -> split -> (N, T')) skips tokenizing again when the caller already has them.
    """
    from ..data import synthcaps

    waves = {s: synthcaps.split_waveforms(preset, s) for s in (train_split, test_split)}
    labels = {s: synthcaps.split_labels(preset, s) for s in (train_split, test_split)}
    tokens = tokens or {name: {s: tok.tokenize(w) for s, w in waves.items()} for name, tok in tokenizers.items()}
    rows = []
    for name, tok in tokenizers.items():
        feats = {s: token_histograms(tokens[name][s], tok.vocab_size, 256) for s in waves}
        for task, (kind, fn) in CLIP_TASKS.items():
            y = {s: [str(fn(d)) for d in labels[s]] for s in waves}
            rows.append({"tokenizer": name, "task": task, "kind": kind, "level": "clip",
                         **probe_accuracy(feats[train_split], y[train_split], feats[test_split], y[test_split])})
    if not frame_level:
        return rows
    frame_rate = next(iter(tokenizers.values())).frame_rate
    frames = {s: next(iter(tokens.values()))[s].shape[1] for s in waves}
    targets = {s: frame_targets(synthcaps_notes(preset, s), labels[s], frames[s], frame_rate) for s in waves}
    for name, tok in tokenizers.items():
        x = {s: context_onehots(tokens[name][s], tok.vocab_size) for s in waves}
        for task, kind in FRAME_KINDS.items():
            rows.append({"tokenizer": name, "task": task, "kind": kind, "level": "frame",
                         **frame_probe(x[train_split], targets[train_split][task], x[test_split],
                                       targets[test_split][task])})
    return rows


# ---------------------------------------------------------------------------------------------
# Before k-means: what each layer's continuous embeddings know
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def layer_features(model, waves: Tensor, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Frames of every stage of a SemanticModel, name -> (N * T', dim) (Chapter 4).

    "log-mel" (the input, averaged to the frame rate), "encoder", "contrastive" (output of the
    contrastive module), "mlm 1" ... "mlm L" (each MLM layer).
    """
    model.eval()
    out: dict[str, list] = {}
    for w in torch.as_tensor(waves).split(batch_size):
        mel = model.encoder.log_mel(w)  # (B, 4T', M)
        feats = model.encoder(w)  # (B, T', D)
        context = model.contrastive(feats)[-1]
        stages = {"log-mel": mel.reshape(mel.shape[0], feats.shape[1], -1, mel.shape[-1]).mean(2),
                  "encoder": feats, "contrastive": context}
        stages.update({f"mlm {i + 1}": h for i, h in enumerate(model.mlm(context))})
        for name, x in stages.items():
            out.setdefault(name, []).append(x.flatten(0, 1).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Least-squares linear classifier, closed form: standardize, regress one-hot labels, take the argmax (Chapter 4).

    train_x (N, D), train_y (N,) int labels, test_x (M, D) -> predicted labels (M,). Milliseconds
    where a logistic regression takes seconds, which matters for probing many layers in a notebook.
    """
    x = torch.as_tensor(train_x, dtype=torch.float64)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    x = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # (N, D + 1) with a bias column
    classes, y = np.unique(train_y, return_inverse=True)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y), len(classes)).to(x.dtype)  # (N, C)
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ onehot)  # (D + 1, C)
    z = (torch.as_tensor(test_x, dtype=torch.float64) - mean) / std
    scores = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1) @ w
    return classes[scores.argmax(1).numpy()]


def layer_probes(model, train_waves: Tensor, train_targets: dict[str, np.ndarray], test_waves: Tensor,
                 test_targets: dict[str, np.ndarray], tasks: Sequence[str] = ("melody pitch class", "instrument"),
                 ) -> list[dict]:
    """Linear (ridge) probes on each stage's continuous frames, fitted on train frames, scored on test (Chapter 4).

    targets: task -> (N * T',) labels, -1 where undefined (as `frame_targets` returns). One row per
    (stage, task), with "tokenizer" naming the stage so `format_probe_table` can print them.
    """
    train, test = layer_features(model, train_waves), layer_features(model, test_waves)
    rows = []
    for task in tasks:
        ytr, yte = train_targets[task], test_targets[task]
        ktr, kte = ytr >= 0, yte >= 0
        values, counts = np.unique(ytr[ktr], return_counts=True)
        majority = float(np.mean(yte[kte] == values[counts.argmax()]))
        for name in train:
            pred = ridge_probe(train[name][ktr], ytr[ktr], test[name][kte])
            rows.append({"tokenizer": name, "task": task, "kind": FRAME_KINDS.get(task, ""), "level": "frame",
                         "accuracy": float(np.mean(pred == yte[kte])), "majority": majority,
                         "n_test": int(kte.sum()), "n_classes": int(len(values))})
    return rows
