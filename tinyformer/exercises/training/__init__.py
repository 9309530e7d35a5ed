"""Exercises of chapter "Training" (book/training.md): the loss, the shifted targets, and one AdamW step.

starter.py is the file ``init`` copies to DIR/training.py (read as text, not imported here);
solution.py, checks.py and hints.py are described in :mod:`tinyformer.exercises`.
"""
