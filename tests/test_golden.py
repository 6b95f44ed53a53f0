"""Golden output of the shipped tiny pipeline (Chapters 6-7): refactors must not change a single sample.

The hashes below were recorded with the shipped `tiny` checkpoints before the package was re-laid out
(issue 10). A change of code that is meant to keep behaviour (moving modules, merging loaders) must
keep them; a retrained checkpoint or a deliberate change of sampling records new ones, in its own commit.
Floating-point sums can differ between CPU kinds, so on another machine the hash may differ for no
fault of the code: the test then fails loudly rather than pass silently.
"""
import hashlib

import pytest
import torch

from musiclm_mini.musiclm import MusicLM

CAPTIONS = ["a calming violin melody backed by a distorted guitar riff", "an energetic rock song with loud drums"]
SECONDS, SEED = 3.0, 7
GOLDEN = {
    CAPTIONS[0]: "7ffc254cb8afa025f661c29274505edfb9c5aef3fe462c6120d8673558b8965e",
    CAPTIONS[1]: "2eb67688895ec8e30acef700ff3e2803caecbe94c0429639dcd89616736328f0",
}


def audio_hash(wave: torch.Tensor) -> str:
    """sha256 of the float32 samples as bytes."""
    return hashlib.sha256(wave.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return MusicLM.from_pretrained("tiny")


@pytest.mark.slow
@pytest.mark.parametrize("caption", CAPTIONS)
def test_generate_gives_the_recorded_audio_bytes(shipped, caption):
    wave = shipped.generate(caption, SECONDS, seed=SEED)
    assert wave.shape == (round(SECONDS * shipped.sample_rate),)
    assert audio_hash(wave) == GOLDEN[caption]
