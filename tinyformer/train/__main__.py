"""``python -m tinyformer.train`` (and ``torchrun ... -m tinyformer.train``): the command line."""

import sys

from .cli import main

sys.exit(main())
