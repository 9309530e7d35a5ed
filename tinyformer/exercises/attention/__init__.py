"""Exercises of chapter "Self-attention, by hand" (book/attention.md): softmax and scaled dot-product attention.

starter.py is the file ``init`` copies to DIR/attention.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
