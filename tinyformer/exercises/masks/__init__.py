"""Exercises of chapter "Masks" (book/masks.md): the causal mask, and attention that respects a mask.

starter.py is the file ``init`` copies to DIR/masks.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
