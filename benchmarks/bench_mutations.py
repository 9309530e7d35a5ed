"""How well the exercise checker catches and names mistakes: the mutation suite, in full.

    python benchmarks/bench_mutations.py                      # every mutant (about 2 minutes on 2 cores)
    python benchmarks/bench_mutations.py --chapter attention  # one chapter
    python benchmarks/bench_mutations.py --show undiagnosed   # with the report of each mutant not named

Mutants of the reference solutions are made with ``ast`` (tinyformer/exercises/mutations.py):
swapped operators, changed constants, exponents and axes, dropped or doubled terms and
statements, dropped transposes, off-by-one slices, ranges and comparisons. Those that change
nothing are dropped; each other one is checked as a reader's code is. The table gives, per
chapter, the share the checker fails (caught, target 100%) and the share it gives a diagnosis
of a kind right for the mutation (diagnosed, target >= 80%), and how much of that is an error or a
wrong shape reported before any numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyformer.exercises.mutations import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
