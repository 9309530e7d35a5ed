"""Exercises of chapter "Residuals and normalization" (book/normalization.md): LayerNorm, RMSNorm and a pre-norm block.

starter.py is the file ``init`` copies to DIR/normalization.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
