"""Data-quality metrics: pure functions, one float per item, NaN where an item cannot be measured.

Image metrics take ``images`` (float arrays in [0, 1] of shape (n, H, W) or (n, H, W, C), or a list of
per-item arrays when sizes differ) and measure on 0..255 intensities. Embedding metrics take ``embeddings`` of
shape (n, d).
"""

from plugins.metrics._images import invalid_items

__all__ = ["invalid_items"]
