"""Chapter 1's data: SynthCaps, made offline from public-domain scores, and real captioned audio.

    from musiclm_mini.data import synthcaps, realdata

    scores     music21 corpus -> note lists (melody, harmony, bass), key and bar grid
    render     arrangement, drum grooves, FluidSynth rendering, a hummed voice, WAV bytes
    captions   labels -> MusicCaps-style captions and aspect lists
    synthcaps  generation, splits by source score, datasets save/load, melody pairs
    realdata   the MusicCaps CSV joined to your clips, and your own audio folder

Nothing is imported here on purpose: the worker processes that render SynthCaps import this
package, and they should not pay for torch or datasets.
"""

__all__ = ["captions", "realdata", "render", "scores", "synthcaps"]
