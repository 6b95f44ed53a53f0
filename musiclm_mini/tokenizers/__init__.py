"""Audio and text -> tokens (Chapters 2-5; MusicLM Sec. 3.1): the three tokenizers MusicLM stands on.

    quantize.py      residual vector quantization (Chapter 2)
    soundstream.py   SoundStream, the acoustic tokens (Chapter 3), with codec_losses.py and codec_eval.py
    w2v_bert.py      the w2v-BERT-style model (Chapter 4), with conformer.py
    kmeans.py        its k-means: semantic tokens (Chapter 4); mfcc.py, the baseline; token_probes.py
    mulan.py         MuLan, music-text embeddings and their tokens (Chapter 5), with mulan_text.py

Loading the trained ones: `musiclm_mini.components.load("codec" | "w2v-bert" | "kmeans" | "mfcc" | "mulan")`.
"""
