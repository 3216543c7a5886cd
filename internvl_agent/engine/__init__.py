"""The local InternVL inference engine (transformers, no remote code)."""
