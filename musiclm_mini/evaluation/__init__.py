"""Chapter 7's measuring tools: is the generated music good, and does it follow its text? (MusicLM Sec. 4.3-5)

    from musiclm_mini.evaluation import fad, kld, tagger, transcribe, listening

    fad         Fréchet distance between Gaussian fits of two embedding sets, at a fixed clip count;
                embeddings from a pretrained transcriber, any function (MuLan), or VGGish online
    kld         KL(reference || generated) between label posteriors, per caption, averaged
    tagger      a small log-mel CNN trained on SynthCaps labels: posteriors for KLD, held-out accuracy,
                "asked for X, got X" tables; the component `tagger` (`components.load("tagger")`),
                trained by train_tagger (`python -m musiclm_mini.train tagger`)
    transcribe  basic-pitch (ONNX, shipped in its PyPI package): notes from audio, note F1, and the
                true notes of a SynthCaps clip re-derived from its score
    listening   the reader's blind A/B test (ipywidgets), counted in wins as in the paper's Table 1

Nothing is imported here on purpose: each module pulls in only what it needs (onnxruntime, ipywidgets).
"""

__all__ = ["fad", "kld", "listening", "tagger", "train_tagger", "transcribe"]
