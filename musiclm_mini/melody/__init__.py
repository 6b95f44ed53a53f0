"""Melody conditioning (Chapter 8; MusicLM Sec. 6 and appendix C): one idea per file.

    frontend.py   audio -> log-mel frames of 4 s windows at a 3 s hop (the ViT's input)
    vit.py        the melody embedder: a ViT over mel frames -> one unit vector per window
    triplet.py    the semi-hard triplet loss (FaceNet) with in-batch mining
    augment.py    changes of sound that keep the melody: gain, noise, reverb-like smearing
    dataset.py    the training set of melody groups (rendered by `data/melody_pairs.py`) as mel frames
    retrieval.py  same-melody retrieval, recall@k against chance: the embedder's held-out figure
    baselines.py  the same retrieval from pitch classes alone (key profile, chroma sequence): no learning
    tokens.py     melody tokens: each window's embedding quantized by the RVQ of Chapter 2
    alignment.py  which melody windows condition which semantic tokens: a crop's (a window's) own time span
    stage.py      the melody-semantic stage: [melody tokens] + [MuLan tokens] + [semantic tokens], its model
    chroma.py     chroma melody tokens: the dominant pitch class every 80 ms, or "no pitch" (tiny's departure)
    coarse.py     the melody-coarse stage: [melody tokens] + [MuLan] + [semantic] + [coarse acoustic tokens]
    token_cache.py  the training clips' melody tokens on a time grid (and chroma tokens), cached
    generation.py   a hum + a text -> music: the input checks, the trained parts, the melody stage's windows

Training lives in `train/melody.py` (`python -m musiclm_mini.train melody-embedder`), `train/melody_stage.py`
(`python -m musiclm_mini.train melody-semantic-stage`) and `train/melody_coarse.py` (`... melody-coarse-stage`).
"""
