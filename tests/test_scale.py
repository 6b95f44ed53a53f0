"""Chapter 11's calculator: parameters against the real models, activations against a measured run, the exercise."""
import pytest
import torch

from musiclm_mini import scale
from musiclm_mini.config import get_preset
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
from musiclm_mini.hierarchy.tokens import STAGE_NAMES

torch.set_num_threads(1)


@pytest.mark.parametrize("preset", ["tiny", "colab", "paper"])
def test_parameters_by_hand_equal_the_meta_device_count(preset):
    for stage in STAGE_NAMES:
        assert scale.stage_cost(preset, stage).params == scale.meta_parameters(preset, stage)


def test_paper_stages_are_about_430m_and_their_flops_about_6n():
    for c in scale.cost_table(("paper",)):
        assert 4.0e8 < c.params < 4.6e8
        assert 6 * c.params * 0.9 < c.flops_per_token < 6 * c.params * 1.3  # attention adds a little


def test_tiny_weight_bytes_are_exact_and_activations_match_a_measured_run():
    p = get_preset("tiny")
    for stage in STAGE_NAMES:
        c = scale.stage_cost(p, stage, bf16=False)
        model = build_stage_model(stage_model_config(stage, p))
        assert c.weights == sum(t.numel() * t.element_size() for t in model.parameters())  # fp32, exactly
        measured = scale.measured_stage_activations(p, stage)
        assert 0.8 < measured / c.activations < 1.25, (stage, measured, c.activations)
        checkpointed = scale.measured_stage_activations(p, stage, checkpointed=True)
        assert checkpointed < c.activations_checkpointed < c.activations  # the estimate adds what hooks can't see


def test_sequence_lengths_follow_the_layouts():
    paper = {c.stage: c.seq_len for c in scale.cost_table(("paper",))}
    # semantic: 12 MuLan + null-free 30 s x 25 Hz; coarse: 12 + 10 s x 25 + 10 s x 50 Hz x 4; fine: 3 s x 50 Hz x 12
    assert paper == {"semantic": 12 + 750 - 1, "coarse": 12 + 250 + 2000 - 1, "fine": 1800 - 1}


def test_memory_shards_states_under_fsdp_only():
    c = scale.stage_cost("paper", "coarse")
    assert c.memory(2, gpus=8) == c.memory(2)  # DDP: every GPU keeps everything
    assert c.memory(2, gpus=8, fsdp=True) == pytest.approx(c.memory(2) - c.states * 7 / 8)
    assert c.memory(2, checkpointed=True) < c.memory(2)
    assert c.gpu_days(gpu="H100 SXM (bf16)") < c.gpu_days() < c.gpu_days(gpu="T4 (fp32)")


def test_exercise_reference_agrees_with_the_package_and_the_grader_names_mistakes(capsys):
    from musiclm_mini.exercises import check_stage_memory
    from musiclm_mini.exercises.scaling import GIB, reference_stage_memory

    for c in scale.cost_table(("paper",)):
        for gpus, fsdp, ck in ((1, False, False), (8, True, True), (8, False, True)):
            per_token = c.activations_checkpointed if ck else c.activations
            assert reference_stage_memory(c.params, 2, c.seq_len, per_token, gpus, fsdp) * GIB == pytest.approx(
                c.memory(2, gpus, fsdp, ck))

    def stub(*args):
        raise NotImplementedError

    def no_adam(params, micro_batch, seq_len, bytes_per_token, gpus=1, fsdp=False):
        return (8 * params / (gpus if fsdp else 1) + micro_batch * seq_len * bytes_per_token) / GIB

    assert check_stage_memory(stub) is False and "not implemented" in capsys.readouterr().out
    assert check_stage_memory(no_adam) is False and "two fp32 moments" in capsys.readouterr().out
    assert check_stage_memory(reference_stage_memory) is True and "All checks passed" in capsys.readouterr().out
