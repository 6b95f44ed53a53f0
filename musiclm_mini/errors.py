"""The book's exceptions: one clear error per kind of bad input (all chapters)."""


class MusicLMError(Exception):
    """Base class of every error the package raises on purpose."""


class AudioError(MusicLMError, ValueError):
    """Audio that cannot be used: unreadable file, missing clip, NaN or infinite samples (Chapter 1)."""


class TextError(MusicLMError, ValueError):
    """Text that cannot condition a model: empty or whitespace-only captions (Chapters 5-7)."""


class CheckpointError(MusicLMError, RuntimeError):
    """A checkpoint that is missing, corrupt, or made for another configuration (Chapter 3 onwards)."""
