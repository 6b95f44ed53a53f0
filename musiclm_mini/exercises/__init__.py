"""Graders for the chapters' exercises: each `check_...` prints what passed and returns a bool."""
from .rvq import check_residual_encode  # Chapter 2
from .audio_data import check_to_mono_24k  # Chapter 1
from .mulan import check_contrastive_loss  # Chapter 5
from .soundstream import check_causal_conv  # Chapter 3
from .semantic import check_lloyd_step  # Chapter 4
from .stages import check_flatten_frames  # Chapter 6
from .evaluation import check_frechet_distance  # Chapter 7
from .melody import check_semi_hard_mining  # Chapter 8
from .long_generation import check_windows  # Chapter 9
from .memorization import check_histogram_cost  # Chapter 10
from .scaling import check_stage_memory  # Chapter 11
