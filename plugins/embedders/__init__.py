"""Embedders: images -> (n, d) vectors for uniqueness, near-duplicate filtering and Image Diversity."""
