"""``python -m tinyformer.train`` (and ``torchrun ... -m tinyformer.train``): the command line."""

from .cli import command

command()
