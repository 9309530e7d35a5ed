"""Exercises of chapter "Multi-head attention and the MLP" (book/multihead.md): multi-head attention and SwiGLU.

starter.py is the file ``init`` copies to DIR/multihead.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
