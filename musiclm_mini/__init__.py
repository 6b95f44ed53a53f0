"""musiclm-mini: MusicLM rebuilt small, one module per chapter."""
