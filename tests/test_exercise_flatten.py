"""Chapter 6's exercise: the grader of frame-by-frame flattening, and its tie to the package."""
import pytest
import torch

from musiclm_mini.exercises import check_flatten_frames
from musiclm_mini.exercises.stages import reference_flatten_frames
from musiclm_mini.hierarchy.tokens import flatten_frames, unflatten_frames


@pytest.mark.parametrize("shape,k,offset", [((2, 4, 5), 16, 0), ((3, 4, 7), 256, 3200), ((1, 8, 3), 1024, 1024),
                                             ((2, 1, 6), 8, 5), ((4, 3, 1), 8, 0)])
def test_the_graders_independent_reference_agrees_with_the_package(shape, k, offset):
    codes = torch.randint(0, k, shape, generator=torch.Generator().manual_seed(sum(shape)))
    ref = reference_flatten_frames(codes, k, offset)
    assert torch.equal(ref, flatten_frames(codes, k, offset))  # the package's flattening is what the grader wants
    assert torch.equal(unflatten_frames(ref, shape[1], k, offset), codes)


def test_the_reference_by_hand():
    codes = torch.tensor([[[1, 2], [3, 4]]])  # (1, Q=2, T=2): level 0 has 1, 2; level 1 has 3, 4
    # frame 0: 100 + 0*10 + 1, 100 + 1*10 + 3; frame 1: 100 + 2, 100 + 10 + 4
    assert reference_flatten_frames(codes, 10, 100).tolist() == [[101, 113, 102, 114]]


def test_the_package_passes_its_own_exercise():
    assert check_flatten_frames(flatten_frames, verbose=False) is True


def test_exercise_stub_fails_and_reference_passes_and_mistakes_are_named(capsys):
    def stub(codes, codebook_size, offset):
        raise NotImplementedError

    def level_major(codes, codebook_size, offset):  # a plausible mistake: level by level
        levels = torch.arange(codes.shape[1]).view(1, -1, 1) * codebook_size
        return (codes + offset + levels).reshape(codes.shape[0], -1)

    assert check_flatten_frames(stub) is False
    assert "not implemented" in capsys.readouterr().out
    assert check_flatten_frames(level_major) is False
    assert "frame by frame" in capsys.readouterr().out
    def loops(codes, codebook_size, offset):  # written out frame by frame, not the package's flatten_frames
        B, Q, T = codes.shape
        return torch.stack([torch.tensor([offset + q * codebook_size + int(codes[b, q, t])
                                          for t in range(T) for q in range(Q)]) for b in range(B)])

    assert check_flatten_frames(loops) is True
    assert "All checks passed" in capsys.readouterr().out
    assert torch.equal(reference_flatten_frames(torch.zeros(1, 2, 1, dtype=torch.long), 5, 1), torch.tensor([[1, 6]]))
