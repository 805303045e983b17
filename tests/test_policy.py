"""The fallback policy: LLMCad's alpha rule and the cost floor from measured rounds."""
from __future__ import annotations

import pytest

from duet.policy import FallbackPolicy


def test_alpha_halves_after_a_wholly_right_branch_and_becomes_the_wrong_fraction_otherwise():
    policy = FallbackPolicy(alpha=0.2)
    policy.update(5, 5)
    assert policy.alpha == pytest.approx(0.1)
    policy.update(1, 4)
    assert policy.alpha == pytest.approx(0.75)
    policy.update(0, 0)  # nothing drafted: nothing learnt
    assert policy.alpha == pytest.approx(0.75)


def test_cost_floor_is_the_draft_step_over_the_time_per_token():
    policy = FallbackPolicy(smoothing=1.0)  # no running mean: the last round decides
    policy.observe_round(0.03, 1.2, 12)     # 0.1 s per token, 0.03 s per draft step
    assert policy.cost_floor == pytest.approx(0.3)
    policy.observe_round(None, 0.5, 1)      # no step this round: the last step time stays
    assert policy.cost_floor == pytest.approx(0.06)
    policy.observe_round(0.5, 0.5, 1)       # drafting dearer than a token: capped
    assert policy.cost_floor == pytest.approx(0.9)


def test_rounds_are_folded_into_running_means():
    policy = FallbackPolicy(smoothing=0.5)
    policy.observe_round(0.02, 1.0, 10)
    policy.observe_round(0.04, 1.0, 2)
    assert policy.cost_floor == pytest.approx(0.03 * 6 / 1.0)


def test_should_verify_below_the_floor_or_past_the_caps():
    policy = FallbackPolicy(alpha=0.01, max_depth=4, max_nodes=6, smoothing=1.0)
    assert not policy.should_verify(0.2, 1, 2)
    policy.observe_round(0.03, 1.2, 12)
    assert policy.should_verify(0.2, 1, 2) and not policy.should_verify(0.35, 1, 2)
    assert policy.should_verify(0.9, 5, 2) and policy.should_verify(0.9, 1, 7)


@pytest.mark.parametrize("bad", [dict(alpha=0.0), dict(alpha=1.0), dict(max_depth=0), dict(max_nodes=0)])
def test_bad_policy_arguments(bad):
    with pytest.raises(ValueError):
        FallbackPolicy(**bad)
