"""The starter files that ``python -m tinyformer.exercises init DIR`` copies, one per chapter."""
