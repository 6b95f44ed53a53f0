"""Training and shipping every component (Chapters 3-6; MusicLM Sec. 4.1-4.2).

    __main__.py     the one entry point: a subcommand per component, and `ship`
    recipes.py      the settings that made each shipped checkpoint
    loop.py         `Run` and `fit`: schedule, validation, checkpoints, exact resume
    distributed.py  devices, ranks, DistributedDataParallel
    codec.py        SoundStream (Chapter 3)
    w2v_bert.py     w2v-BERT, its k-means and the MFCC baseline (Chapter 4)
    mulan.py        MuLan (Chapter 5)
    stages.py       the semantic, coarse and fine stages (Chapter 6)
    ship.py         run folder -> musiclm_mini/checkpoints, re-measured

Nothing here is imported by the inference code (`musiclm.py`, `tokenizers/`, `hierarchy/`).
"""
