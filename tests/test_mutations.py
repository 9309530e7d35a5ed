"""The mutation suite, scaled down for CI: a fixed sample of mutants per component must all be
caught, and at least 80% named with a diagnosis of the right kind (the full table:
benchmarks/bench_mutations.py)."""

import ast

import pytest

from tinyformer.exercises import find_component
from tinyformer.exercises.mutations import RIGHT_KINDS, Mutant, judge, mutants, run_suite, table

SAMPLE = 5  # mutants per component: about 90 in all, about 20 s


@pytest.fixture(scope="module")
def sampled():
    return run_suite(sample=SAMPLE, seed=0, progress=False)


def test_every_sampled_mutant_is_caught_and_most_are_diagnosed(sampled):
    outcomes = [o for chapter in sampled.values() for o in chapter]
    assert len(outcomes) >= 60, table(sampled)
    missed = [o.mutant.where for o in outcomes if not o.caught]
    assert not missed, missed
    diagnosed = sum(o.diagnosed for o in outcomes) / len(outcomes)
    assert diagnosed >= 0.8, "\n".join(table(sampled))


def test_mutants_are_single_changes_that_parse():
    softmax = mutants(find_component("softmax"))
    assert len(softmax) >= 10
    operators = {m.operator for m in softmax}
    assert {"swap operator", "change axis", "drop term"} <= operators
    for m in softmax:
        ast.parse(m.source)
        assert m.operator in RIGHT_KINDS


def test_a_diagnosis_of_the_wrong_kind_counts_against():
    """The judge checks the kinds against the operator: scores multiplied instead of divided is
    diagnosed as a scale; the same output under an operator that only allows "axis" is not."""
    component = find_component("scaled_dot_product_attention")
    scaled = next(m for m in mutants(component) if m.operator == "swap operator" and "math.sqrt(d_head)" in m.where
                  and "* math.sqrt" in m.where)
    outcome = judge(scaled, component)
    assert outcome.caught and outcome.diagnosed and outcome.kinds[0] == "scale", outcome.lines
    relabelled = Mutant(scaled.component, "drop transpose", scaled.where, scaled.source)
    assert not judge(relabelled, component).diagnosed
