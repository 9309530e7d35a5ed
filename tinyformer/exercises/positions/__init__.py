"""Exercises of chapter "Embeddings and positions" (book/positions.md): sinusoidal positions and RoPE.

starter.py is the file ``init`` copies to DIR/positions.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
