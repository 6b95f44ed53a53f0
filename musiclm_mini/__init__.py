"""musiclm-mini: MusicLM (Agostinelli et al., 2023) rebuilt small, laid out like the book.

Chapter -> modules (paper section in each module's docstring):

    1  Audio data             data/ (synthcaps, scores, render, captions, realdata), audio.py, paper.py
    2  Residual VQ            tokenizers/quantize.py
    3  SoundStream            tokenizers/soundstream.py, codec_losses.py, codec_eval.py; train/codec.py;
                              the tiny CPU codec: tokenizers/spectral_codec.py, data/codec_audio.py,
                              train/spectral_codec.py; Opus as a yardstick: tokenizers/opus.py
    4  Semantic tokens        tokenizers/w2v_bert.py, conformer.py, kmeans.py, mfcc.py, token_probes.py;
                              train/w2v_bert.py
    5  MuLan                  tokenizers/mulan.py, mulan_text.py; train/mulan.py
    6  The three stages       hierarchy/transformer.py (the generic decoder), tokens.py (vocabularies and
                              sequence layouts), sampling.py (temperature, guidance, windows),
                              stage_models.py, token_cache.py, mulan_embedding.py, ngram.py (count
                              baselines); train/stages.py; text to music: musiclm.py, __main__.py
                              (`python -m musiclm_mini generate ...`)
    7  Evaluation, Table 1    evaluation/ (fad, kld, tagger, train_tagger, transcribe, listening); the
                              ablation's stage: hierarchy/tokens.py (MulanOnlyCoarseStage)
    8  Melody (being written) melody/
    9  Long generation        musiclm.py (window_plan, MusicLM.story), hierarchy/sampling.py
                              (sliding_windows with breaks), evaluation/continuity.py
    10 Memorization           evaluation/memorization.py
    11 Scaling up             scale.py (parameters, FLOPs, memory, GPU-days), device.py; train/scaling.py
                              (FSDP, bf16, accumulation, activation checkpointing)

Across chapters:

    config.py       the presets `tiny`, `colab`, `paper` (frozen dataclasses)
    components.py   the one component API: `load(component, preset=..., path=...)`, checkpoint folders,
                    fingerprints; every trained part (codec, spectral-codec, w2v-bert, kmeans,
                    mfcc, mulan, semantic-stage, coarse-stage, fine-stage, coarse-nosemantic-stage,
                    melody-embedder) is registered there
    checkpoint.py   safetensors + JSON checkpoints, written atomically, never pickled
    train/          `python -m musiclm_mini.train <component>` (recipes, loop, DDP) and `... train ship`
    exercises/      the chapters' exercises and their graders
    widgets.py      a slider over pre-made clips with one player, and its static table (Chapters 2, 6)
    errors.py       one exception per kind of bad input

Inference code (`musiclm.py`, `tokenizers/`, `hierarchy/`) never imports `train/`
(`tests/test_layout.py` checks it, and that there is no import cycle).
"""
