"""Exercises of chapter "Sampling" (book/sampling.md): top-k and top-p (nucleus) next-token distributions.

starter.py is the file ``init`` copies to DIR/sampling.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
