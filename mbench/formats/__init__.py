"""File formats: one reader (and writer) per format, used by every command alike."""
