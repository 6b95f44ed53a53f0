"""What scale costs: parameters, FLOPs, memory and GPU-days of each stage at each preset (Chapter 11).

MusicLM Sec. 4.1-4.2: three decoder-only Transformers of 24 layers, d_model 1024 (about 430M parameters
each), trained on 280k hours of music. The paper gives no training compute; this module estimates it
from the sizes alone, with the usual rules (Kaplan et al., 2020; Korthikanti et al., 2022):

    FLOPs per trained token      6 N  +  12 n_layers L d        (matmuls; attention scores, L = sequence)
    memory, per parameter        4 (fp32 weights) + 4 (gradients) + 8 (Adam's two moments) bytes
    activations, per token       each layer keeps what its backward needs (`activation_bytes_per_token`)
    GPU time                     FLOPs / (peak FLOP/s x MFU)

Every figure is an estimate, except the parameter count, which `tests/test_scale.py` checks against a
model built on the meta device, and the activation bytes of `tiny`, measured by `measured_activation_bytes`.
Nothing here imports the training code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Preset, TransformerConfig, get_preset
from .hierarchy.tokens import STAGE_NAMES, TokenLayout, make_stage

ADAM_BYTES = 4 + 4 + 8  # fp32 weight, fp32 gradient, two fp32 Adam moments, per parameter
MFU = 0.3  # assumed model-FLOPs utilisation: an estimate, not a measurement
PEAK_FLOPS = {  # dense peak FLOP/s of the precision `train/scaling.autocast_dtype` picks on each GPU
    "T4 (fp32)": 8.1e12,  # no bf16 on a T4, so fp32 (fp16 would need a loss scaler)
    "A100 (bf16)": 312e12,
    "H100 SXM (bf16)": 989e12,
}
PAPER_HOURS = 280_000  # Sec. 4.2; also `DataConfig.paper_train_hours`


# ---------------------------------------------------------------------------------------------
# Shapes of one stage
# ---------------------------------------------------------------------------------------------
def stage_vocab(preset: Preset, stage: str) -> int:
    return make_stage(stage, TokenLayout.from_preset(preset)).vocab_size


def sequence_length(preset: Preset, stage: str) -> int:
    """Tokens in one training example of `stage`: conditioning + targets of one crop (Chapter 11).

    Counted from the stage's own layout on a crop of `crop_seconds` (the paper's 30 s semantic crop
    is longer than our 10 s clips, so this is what the paper trained, not what our data allow).
    """
    from .hierarchy.token_cache import TokenGrid, TokenSet, stage_batch

    lay, grid = TokenLayout.from_preset(preset), TokenGrid.from_preset(preset)
    crop = getattr(preset, f"{stage}_stage").crop_seconds
    units = grid.crop_frames("coarse", crop) // grid.acoustic_per_unit  # whole time units of the crop
    tokens = TokenSet(torch.zeros(1, lay.mulan_levels, dtype=torch.long),
                      torch.zeros(1, units * grid.semantic_per_unit, dtype=torch.long),
                      torch.zeros(1, lay.codec_levels, units * grid.acoustic_per_unit, dtype=torch.long))
    seq, _ = stage_batch(make_stage(stage, lay), tokens, [0], grid, crop, torch.Generator().manual_seed(0))
    return seq.shape[1] - 1  # the model reads all but the last token


def transformer_parameters(t: TransformerConfig, vocab: int, codebook_dim: int | None = None,
                           mulan_levels: int = 0) -> int:
    """Parameters of `hierarchy.transformer.Transformer`, counted by hand (Chapter 11).

    codebook_dim: with the MuLan codebook embedding (`mulan_embedding.py`), its projection codebook_dim ->
    d_model and one learned vector per MuLan level; the codebooks themselves are a buffer, not parameters.
    """
    d, ff = t.d_model, t.d_ff
    block = 2 * d + 4 * d * d + (3 if t.gated_ff else 2) * d * ff  # 2 RMSNorm gains, qkv + proj, feed-forward
    embed = vocab * d + ((codebook_dim + mulan_levels) * d if codebook_dim else 0)
    return embed + t.rel_pos_buckets * t.n_heads + t.n_layers * block + d + d * vocab  # + final norm + head


def stage_parameters(preset: Preset, stage: str) -> int:
    cfg = getattr(preset, f"{stage}_stage")
    reads_mulan = make_stage(stage, TokenLayout.from_preset(preset)).reads_mulan
    dim = preset.mulan.rvq.dim if cfg.mulan_codebook_embedding and reads_mulan else None
    return transformer_parameters(cfg.transformer, stage_vocab(preset, stage), dim, preset.mulan.rvq.num_quantizers)


def flops_per_token(t: TransformerConfig, params: int, vocab: int, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token: 6 N for the matmuls, plus the attention scores.

    N leaves out the input embedding (a lookup, not a matmul). Attention: QK^T and AV cost 2 x 2 L d
    per token and layer forward, x3 with backward; the relative-position bias rules out skipping the
    masked half, so the full L counts.
    """
    matmul_params = params - vocab * t.d_model
    return 6 * matmul_params + 12 * t.n_layers * seq_len * t.d_model


def activation_bytes_per_token(t: TransformerConfig, vocab: int, seq_len: int, bf16: bool,
                               checkpointed: bool = False) -> float:
    """Bytes kept for backward per token of a micro-batch (Chapter 11): an estimate, per layer

        fp32 residual stream, twice (4 + 4) d     inputs of the two RMSNorms
        2 x (x / rms, x / rms x gain), q k v, attention out   8 d x s   (s = 2 bytes in bf16, 4 in fp32)
        feed-forward                        (4 if gated else 2) ff x s
        dropout masks                       2 d (one byte each)
        attention probabilities             n_heads L (2 s + 1): before and after dropout, and its mask,
                                            where the kernel stores them (the CPU math kernel does; the
                                            fused GPU kernels do not, so on a GPU this is an upper bound)

    plus the logits and their fp32 log-softmax: V (s + 4). With activation checkpointing each layer keeps
    only its fp32 input (4 d), and one layer's worth is recomputed at a time.
    """
    s = 2 if bf16 else 4
    d, ff = t.d_model, t.d_ff
    layer = 8 * d + 8 * d * s + (4 if t.gated_ff else 2) * ff * s + 2 * d + t.n_heads * seq_len * (2 * s + 1)
    logits = vocab * (s + 4)
    if checkpointed:
        return t.n_layers * 4 * d + layer + logits
    return t.n_layers * layer + logits


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageCost:
    """Everything the calculator says about one stage at one preset (Chapter 11). Bytes and FLOPs."""

    preset: str
    stage: str
    params: int
    vocab: int
    seq_len: int
    flops_per_token: float
    weights: int  # fp32
    gradients: int
    adam: int
    activations: float  # per example (one sequence) of a micro-batch
    activations_checkpointed: float
    audio_seconds: float  # of music in one example (the crop)

    @property
    def states(self) -> int:
        """Weights + gradients + Adam moments: what DDP keeps on every GPU and FSDP splits over them."""
        return self.weights + self.gradients + self.adam

    def memory(self, micro_batch: int, gpus: int = 1, fsdp: bool = False, checkpointed: bool = False) -> float:
        """Bytes on one GPU: the states (sharded under FSDP) plus the micro-batch's activations."""
        per_example = self.activations_checkpointed if checkpointed else self.activations
        return self.states / (gpus if fsdp else 1) + micro_batch * self.seq_len * per_example

    def flops_per_example(self) -> float:
        return self.flops_per_token * self.seq_len

    def gpu_days(self, hours: float = PAPER_HOURS, gpu: str = "A100 (bf16)", mfu: float = MFU) -> float:
        """GPU-days for one pass over `hours` of music cut into crops of this stage (estimate)."""
        examples = hours * 3600 / self.audio_seconds
        return examples * self.flops_per_example() / (PEAK_FLOPS[gpu] * mfu) / 86_400


def stage_cost(preset: Preset | str, stage: str, bf16: bool = True) -> StageCost:
    """The calculator for one stage (Chapter 11); activations as under bf16 autocast unless `bf16=False`."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    t = getattr(preset, f"{stage}_stage").transformer
    n, vocab, L = stage_parameters(preset, stage), stage_vocab(preset, stage), sequence_length(preset, stage)
    return StageCost(preset.name, stage, n, vocab, L, flops_per_token(t, n, vocab, L), 4 * n, 4 * n, 8 * n,
                     activation_bytes_per_token(t, vocab, L, bf16),
                     activation_bytes_per_token(t, vocab, L, bf16, checkpointed=True),
                     getattr(preset, f"{stage}_stage").crop_seconds)


def cost_table(presets=("tiny", "colab", "paper")) -> list[StageCost]:
    return [stage_cost(p, s) for p in presets for s in STAGE_NAMES]


# ---------------------------------------------------------------------------------------------
# Measurements, to check the estimates
# ---------------------------------------------------------------------------------------------
def meta_parameters(preset: Preset | str, stage: str) -> int:
    """Parameters of the real stage model, built on the meta device (no memory) (Chapter 11)."""
    from .hierarchy.stage_models import build_stage_model, stage_model_config

    preset = get_preset(preset) if isinstance(preset, str) else preset
    with torch.device("meta"):
        model = build_stage_model(stage_model_config(stage, preset))
    return sum(p.numel() for p in model.parameters())


def measured_activation_bytes(model: torch.nn.Module, tokens: torch.Tensor, loss_fn) -> int:
    """Bytes of the tensors autograd saves for backward in one forward of `loss_fn(model, tokens)` (Chapter 11).

    What a profiler would call activation memory, measured on any device: every tensor saved for
    backward is seen once (by its storage), parameters excluded.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and t.device.type != "meta":
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model, tokens)
    del loss
    return sum(seen.values())


def gpu_seconds(flops: float, gpu: str, mfu: float = MFU) -> float:
    """Seconds of `gpu` for `flops` at the stated MFU: an estimate."""
    return flops / (PEAK_FLOPS[gpu] * mfu)


def forward_flops(model, *inputs) -> int:
    """FLOPs of one forward of `model` (a module or any callable), counted op by op by FlopCounterMode (Chapter 11)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


def measured_stage_activations(preset: Preset | str, stage: str, batch: int = 2, checkpointed: bool = False) -> float:
    """Measured bytes saved for backward per token of a training example of `stage` (fp32, CPU) (Chapter 11).

    One forward of the real stage model and `stage_loss` on random tokens laid out as the trainer lays
    them out. With `checkpointed`, the blocks' own inputs, which the checkpoint keeps outside autograd,
    and the layer recomputed during backward are not seen: the estimate counts both.
    """
    from .hierarchy.stage_models import build_stage_model, stage_loss, stage_model_config
    from .hierarchy.token_cache import TokenGrid, TokenSet, stage_batch
    from .train.scaling import checkpoint_blocks

    preset = get_preset(preset) if isinstance(preset, str) else preset
    lay, grid, g = TokenLayout.from_preset(preset), TokenGrid.from_preset(preset), torch.Generator().manual_seed(0)
    units = grid.crop_frames("coarse", getattr(preset, f"{stage}_stage").crop_seconds) // grid.acoustic_per_unit
    tokens = TokenSet(torch.randint(0, lay.mulan_codes, (batch, lay.mulan_levels), generator=g),
                      torch.randint(0, lay.semantic_codes, (batch, units * grid.semantic_per_unit), generator=g),
                      torch.randint(0, lay.codec_codes, (batch, lay.codec_levels, units * grid.acoustic_per_unit),
                                    generator=g))
    seq, mask = stage_batch(make_stage(stage, lay), tokens, list(range(batch)), grid,
                            getattr(preset, f"{stage}_stage").crop_seconds, g)
    model = build_stage_model(stage_model_config(stage, preset)).train()
    if checkpointed:
        checkpoint_blocks(model)
    saved = measured_activation_bytes(model, seq, lambda m, x: stage_loss(m, x, mask)[0])
    return saved / (batch * (seq.shape[1] - 1))


# ---------------------------------------------------------------------------------------------
# The colab recipe on one GPU: time per step of scripts/train_all.sh (estimates)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepEstimate:
    """One component of the `colab` recipe: training FLOPs and estimated hours on each GPU (Chapter 11)."""

    component: str
    steps: int
    batch: int
    flops_per_example: float
    how: str  # how the FLOPs were counted

    @property
    def flops(self) -> float:
        return self.steps * self.batch * self.flops_per_example

    def hours(self, gpu: str, mfu: float = MFU) -> float:
        return gpu_seconds(self.flops, gpu, mfu) / 3600


def _tokenizer_flops_per_second(preset: Preset) -> dict[str, float]:
    """Training FLOPs per second of audio of the codec, w2v-BERT and MuLan's audio tower: 3 x forward,
    the forward counted by FlopCounterMode on 1 s of silence at this preset's size (about a second of CPU)."""
    from .tokenizers.mulan import AudioTower
    from .tokenizers.soundstream import SoundStream
    from .tokenizers.w2v_bert import SemanticModel

    wave = torch.zeros(1, preset.data.sample_rate)
    gen = torch.Generator().manual_seed(0)
    return {"codec": 3 * forward_flops(SoundStream(preset.codec), wave),
            "w2v-bert": 3 * forward_flops(lambda w: SemanticModel(preset.semantic).losses(w, gen), wave),
            "mulan": 3 * forward_flops(AudioTower(preset.mulan), wave)}


def recipe_estimates(preset: Preset | str = "colab") -> list[StepEstimate]:
    """FLOPs of each training step of `scripts/train_all.sh` at `preset`, with the preset's steps and batch."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    tc, per_second = preset.train, _tokenizer_flops_per_second(preset)
    crops = {"codec": preset.codec.crop_seconds, "w2v-bert": preset.semantic.crop_seconds,
             "mulan": preset.mulan.window_seconds}
    out = [StepEstimate(name, tc.steps, tc.batch_size, per_second[name] * crops[name],
                        "3 x forward (FlopCounterMode on 1 s) x crop" + (", discriminator left out" if name == "codec"
                                                                        else ", text tower left out" if name == "mulan"
                                                                        else ""))
           for name in ("codec", "w2v-bert", "mulan")]
    for stage in STAGE_NAMES:
        out.append(StepEstimate(f"{stage}-stage", tc.steps, tc.batch_size, stage_cost(preset, stage).flops_per_example(),
                                "(6 N + 12 n_layers L d) x L"))
    return out
