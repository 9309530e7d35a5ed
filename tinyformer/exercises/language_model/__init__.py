"""Exercises of chapter "The full language model" (book/language_model.md): token ids in, next-token logits out.

starter.py is the file ``init`` copies to DIR/language_model.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
