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


def test_a_node_is_priced_by_its_draft_step_and_its_share_of_the_pass_at_the_better_rate():
    policy = FallbackPolicy(smoothing=1.0, solo_fallback=True)  # no running mean: the last measurement decides
    policy.observe_solo(0.1)                # 10 tokens/s alone
    policy.observe_draft_step(0.01)
    assert policy.cost_floor == pytest.approx(0.1) and policy.leaf_floor == 0  # no pass measured yet
    policy.observe_round(1.0, 5, 9, 0.26)   # 5 tokens/s; the pass's 8 nodes past a step add 0.02 s each
    assert policy.cost_floor == pytest.approx(0.3) and policy.leaf_floor == pytest.approx(0.2)
    policy.observe_round(1.0, 20, 9, 0.26)  # 20 tokens/s: rounds now the better rate
    assert policy.cost_floor == pytest.approx(0.6) and policy.leaf_floor == pytest.approx(0.4)
    policy.observe_draft_step(0.5)          # drafting dearer than a token: capped
    assert policy.cost_floor == pytest.approx(0.9)


def test_without_target_only_steps_a_pass_is_taken_to_cost_the_same_whatever_the_tree():
    policy = FallbackPolicy(smoothing=1.0)  # a streamed target: a pass is its reading
    policy.observe_draft_step(0.03)
    policy.observe_round(1.2, 12, 20, 1.0)  # 0.1 s per token
    assert policy.cost_floor == pytest.approx(0.3) and policy.leaf_floor == 0


def test_measurements_are_folded_into_running_means():
    policy = FallbackPolicy(smoothing=0.5)
    policy.observe_draft_step(0.02)
    policy.observe_draft_step(0.04)
    policy.observe_round(1.0, 10, 12, 0.5)
    policy.observe_round(1.0, 2, 12, 0.5)
    assert policy.cost_floor == pytest.approx(0.03 * 6 / 1.0)


def test_should_verify_below_the_floor_or_past_the_caps():
    policy = FallbackPolicy(alpha=0.01, max_depth=4, max_nodes=6, smoothing=1.0)
    assert not policy.should_verify(0.2, 1, 2)
    policy.observe_draft_step(0.03)
    policy.observe_round(1.2, 12, 7, 1.0)
    assert policy.should_verify(0.2, 1, 2) and not policy.should_verify(0.35, 1, 2)
    assert policy.should_verify(0.9, 5, 2) and policy.should_verify(0.9, 1, 7)


@pytest.mark.parametrize("bad", [dict(alpha=0.0), dict(alpha=1.0), dict(max_depth=0), dict(max_nodes=0)])
def test_bad_policy_arguments(bad):
    with pytest.raises(ValueError):
        FallbackPolicy(**bad)


def test_solo_fallback_measures_both_modes_then_keeps_the_faster_and_probes_the_other():
    policy = FallbackPolicy(solo_fallback=True, probe_tokens=4, smoothing=1.0)
    assert not policy.drafting()             # nothing measured: a target-only step first
    policy.observe_solo(0.05)                # 0.05 s per token alone
    assert policy.drafting()                 # then a round
    policy.observe_round(0.3, 3, 4, 0.1)     # 0.1 s per token drafting: solo pays
    modes = []
    for _ in range(16):
        drafting = policy.drafting()
        modes.append(drafting)
        if drafting:
            policy.observe_round(0.3, 3, 4, 0.1)
        else:
            policy.observe_solo(0.05)
    # Four tokens in the preferred mode, then one round of the other; the probe
    # changed nothing, so the next one comes after eight.
    assert modes == [False] * 4 + [True] + [False] * 8 + [True] + [False] * 2


def test_a_probe_that_changes_the_choice_switches_modes():
    policy = FallbackPolicy(solo_fallback=True, probe_tokens=2, smoothing=1.0)
    policy.observe_solo(0.05)
    policy.observe_round(0.3, 3, 4, 0.1)
    policy.observe_solo(0.05)
    policy.observe_solo(0.05)
    assert policy.drafting()                 # the probe round
    policy.observe_round(0.3, 10, 4, 0.1)    # the text became easy: 0.03 s per token
    assert policy.drafting() and policy.drafting_pays()


def test_without_solo_fallback_every_round_drafts():
    policy = FallbackPolicy(smoothing=1.0)
    assert policy.drafting()
    policy.observe_round(1.0, 1, 2, 0.5)
    policy.observe_solo(0.001)
    assert policy.drafting()


def test_a_request_starts_with_a_round_even_where_solo_pays():
    policy = FallbackPolicy(solo_fallback=True, smoothing=1.0)
    policy.observe_solo(0.01)
    policy.observe_round(1.0, 1, 2, 0.5)
    assert not policy.drafting()
    policy.start_request()
    assert policy.drafting()
    policy.observe_round(1.0, 1, 2, 0.5)
    assert not policy.drafting()


def test_a_request_restarts_the_probe_schedule_an_earlier_request_stretched():
    policy = FallbackPolicy(solo_fallback=True, probe_tokens=4, max_probe_tokens=64, smoothing=1.0)
    policy.observe_solo(0.05)
    policy.observe_round(0.3, 3, 4, 0.1)     # solo pays
    for _ in range(200):                     # probes that change nothing stretch the interval to 64
        if policy.drafting():
            policy.observe_round(0.3, 3, 4, 0.1)
        else:
            policy.observe_solo(0.05)
    policy.start_request()
    assert policy.drafting()
    policy.observe_round(0.3, 3, 4, 0.1)     # the new text's first round is poor too
    modes = []
    for _ in range(5):
        modes.append(policy.drafting())
        policy.observe_solo(0.05)
    # The next probe comes after probe_tokens, not after the 64 the last request reached.
    assert modes == [False] * 4 + [True]
