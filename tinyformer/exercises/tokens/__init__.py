"""Exercises of chapter "Text to tokens" (book/tokens.md): one step of byte-pair encoding (BPE).

starter.py is the file ``init`` copies to DIR/tokens.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
