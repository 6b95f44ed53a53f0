"""Tokens -> tokens: MusicLM's three stages (Chapter 6; MusicLM Sec. 3.2, 4.1).

    transformer.py      the generic decoder-only Transformer (knows nothing of stages)
    tokens.py           each stage's vocabulary and sequence layout
    sampling.py         temperature, top-k, vocabulary slices, classifier-free guidance, windows
    stage_models.py     a Transformer sized for each stage, its loss and parameter counts
    token_cache.py      the training clips' tokens, extracted once; random training crops
    mulan_embedding.py  MuLan tokens embedded through MuLan's codebooks (not in the paper)
"""
