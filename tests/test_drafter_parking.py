"""Parking the small model while the trie carries the text: the switch's rule, the
target's plan changing between passes, and output unchanged through it all."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from duet import _core
from duet.drafter_parking import DrafterParking, RoundRate
from duet.engine import Engine
from duet.gguf_file import GGUFFile
from duet.memory import memory_usage
from duet.model import Model, layer_shape
from duet.ngram_store import NGramStore
from duet.policy import FallbackPolicy
from duet.speculative import SpeculativeStats, TreeDrafter, TreeVerifier, speculative_generate
from duet.tokenizer import Tokenizer
from duet.trie_drafter import MergedDrafter, TrieDrafter
from duet.weight_store import StreamedLayers, layer_segments, plan_memory
from tiny_models import write_tiny_model

PROMPT = "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n"


class Recorder:
    """Stands in for the weight store and the drafter's file: records the calls in order."""

    def __init__(self):
        self.calls = []

    def replan(self, plan):
        self.calls.append(("replan", plan.name))

    def release(self, ranges):
        self.calls.append(("release", ranges))

    def limit_cache(self, ranges):
        self.calls.append(("fetch", ranges))


def fake_parking(**options) -> tuple[DrafterParking, Recorder]:
    recorder = Recorder()
    base = SimpleNamespace(name="base", bytes_read_per_pass=500)
    parked = SimpleNamespace(name="parked", bytes_read_per_pass=200)  # a parked pass: 0.4 of the time
    head = SimpleNamespace(release=lambda: recorder.calls.append(("head", "release")),
                           load=lambda: recorder.calls.append(("head", "load")))
    return DrafterParking(recorder, base, parked, recorder, [(0, 4096)], head, **options), recorder


def test_parks_when_the_trie_would_beat_the_model_and_comes_back_when_it_does_not():
    parking, recorder = fake_parking(margin=0.2, min_rounds=3, min_parked_rounds=5)
    # 20 tokens a second with the model; the trie alone would need 3 passes of
    # 0.5 * 0.4 s for the same 20 tokens: 33 a second.
    for _ in range(2):
        parking.observe_model_round(tokens=20, seconds=1.0, trie_passes=3, pass_seconds=0.5)
    assert not parking.parked and recorder.calls == []  # not before min_rounds
    parking.observe_model_round(tokens=20, seconds=1.0, trie_passes=3, pass_seconds=0.5)
    assert parking.parked
    # The drafter's pages and its head's rows leave before the target's layers come in.
    assert recorder.calls == [("release", [(0, 4096)]), ("head", "release"), ("replan", "parked")]
    # Parked, the trie emits 2 tokens per 0.25 s round: 8 a second, under the model's
    # 20. The first round paid for the switch and is not counted; then the parked
    # mean is long.
    for _ in range(1 + 4):
        parking.observe_trie_round(tokens=2, seconds=0.25)
    assert parking.parked and parking.trie_rate.rounds == 4
    parking.observe_trie_round(tokens=2, seconds=0.25)
    assert not parking.parked and parking.switches == 2
    assert recorder.calls[3:] == [("replan", "base"), ("fetch", [(0, 4096)]), ("head", "load")]


def test_a_round_rate_weighs_its_first_rounds_alike_then_forgets_slowly():
    rate = RoundRate(smoothing=0.25)
    rate.add(tokens=10, seconds=4.0)  # a slow first round
    for _ in range(3):
        rate.add(tokens=10, seconds=1.0)
    assert rate.per_second == pytest.approx(40 / 7)  # the plain mean of four rounds
    rate.add(tokens=10, seconds=1.0)
    assert rate.seconds == pytest.approx(0.75 * 7 / 4 + 0.25 * 1.0)  # then exponential


def test_stays_resident_when_the_trie_is_not_faster_by_the_margin():
    parking, recorder = fake_parking(margin=0.2, min_rounds=1)
    for _ in range(10):  # the trie alone: 20 tokens in 5 passes of 0.4 s: 10 a second
        parking.observe_model_round(tokens=20, seconds=1.0, trie_passes=5, pass_seconds=1.0)
    assert not parking.parked and recorder.calls == []


def test_the_round_after_a_switch_is_not_measured():
    parking, _ = fake_parking(margin=0.2, min_rounds=1, min_parked_rounds=1)
    parking.observe_model_round(tokens=20, seconds=1.0, trie_passes=1, pass_seconds=0.5)
    assert parking.parked
    parking.observe_trie_round(tokens=1, seconds=2.0)  # the pass that copied the layers
    assert parking.parked and parking.trie_rate.rounds == 0
    parking.observe_trie_round(tokens=8, seconds=0.25)
    assert parking.parked and parking.trie_rate.per_second == 32


def test_a_parked_trie_that_keeps_its_pace_stays_parked():
    parking, recorder = fake_parking(margin=0.2, min_rounds=1)
    parking.observe_model_round(tokens=20, seconds=1.0, trie_passes=1, pass_seconds=0.5)
    assert parking.parked
    for _ in range(10):
        parking.observe_trie_round(tokens=8, seconds=0.25)
    assert parking.parked and parking.switches == 1


def test_the_trie_replay_counts_its_passes():
    text = list(range(10, 40))
    trie = TrieDrafter(NGramStore(depth=4), max_nodes=12)
    trie.start(text + text[:3])
    policy = FallbackPolicy(max_depth=10, max_nodes=12)
    # Copying the prompt: up to 10 drafted and one of the target's per pass.
    assert trie.passes_to_emit(text[2], text[3:25], policy) == 2
    # The round ends 6 tokens into a pass whose branch held 10 more and the target's.
    assert trie.passes_to_emit(text[2], text[3:20], policy) == pytest.approx(1 + 6 / 11)
    # Text the store never saw: one token per pass.
    before = list(trie.context)
    assert trie.passes_to_emit(text[2], [900, 901, 902], policy) == 3
    assert trie.context == before  # a replay, not a commit


# ---- the target's plan changes between passes --------------------------------------------

@pytest.fixture(scope="module")
def wide_pair(tmp_path_factory):
    """A target of four layers of about 4.7 MB and a drafter as wide, so that parking
    the drafter makes room for target layers."""
    folder = tmp_path_factory.mktemp("wide")
    target = write_tiny_model(folder / "target.gguf", n_layer=4, n_embd=512, n_ff=1024, weight_type="F16", seed=2)
    draft = write_tiny_model(folder / "draft.gguf", n_layer=2, n_embd=512, n_ff=1024, weight_type="F16", seed=3)
    return target, draft


def test_replan_keeps_promoted_layers_from_the_next_pass_and_frees_demoted_ones(wide_pair):
    gguf = GGUFFile(wide_pair[0])
    pool = _core.ThreadPool(2)
    resident = Model(gguf, pool)
    segments = layer_segments(gguf, resident.config.n_layer)
    layer = max(s.read_bytes for s in segments)
    few = plan_memory(segments, budget=3 * layer + 10, fixed={"other": 10})
    many = plan_memory(segments, budget=5 * layer + 10, fixed={"other": 10}, n_buffers=few.n_buffers)
    assert len(few.resident) == 1 and len(many.resident) == 3 and many.n_buffers == few.n_buffers == 2
    assert many.planned_peak <= many.budget
    layers = StreamedLayers(gguf, few, layer_shape(resident.config), direct_io=False)
    streamed = Model(gguf, pool, layers=layers)
    tokens = np.arange(1, 20, dtype=np.int32)
    expected = resident.forward(tokens, resident.new_cache(64), logits_rows="all")

    def one_pass() -> int:
        before = layers.io_stats()["bytes_read"]
        assert np.array_equal(streamed.forward(tokens, streamed.new_cache(64), logits_rows="all"), expected)
        return layers.io_stats()["bytes_read"] - before

    def read_over(passes: int = 10) -> int:
        """Bytes read over several passes (a read is counted when done, in the
        reader's thread: a single pass's count may hold a read more or less)."""
        return sum(one_pass() for _ in range(passes))

    few_bytes = read_over()
    layers.replan(many)
    assert set(layers.resident) == {s.layer for s in few.resident}  # nothing read yet
    one_pass()  # the promoting pass reads what it always read, and keeps two layers of it
    assert set(layers.resident) == {s.layer for s in many.resident}
    assert read_over() < few_bytes / 2  # 1 layer a pass against 3
    rss = memory_usage().rss
    layers.replan(few)
    assert set(layers.resident) == {s.layer for s in few.resident}
    # The demoted layers' memory goes back to the system, not to the heap.
    freed = sum(s.nbytes for s in many.resident) - sum(s.nbytes for s in few.resident)
    assert rss - memory_usage().rss >= 0.8 * freed
    assert read_over() > 0.8 * few_bytes


def target_only(target: str, prompt=PROMPT, n: int = 40) -> list[int]:
    with Engine(target=target, draft=None, threads=2, n_ctx=256) as engine:
        return engine.generate(prompt, max_tokens=n).tokens


def test_engine_output_is_unchanged_parked_and_back(wide_pair):
    target, draft = wide_pair
    expected = target_only(target)
    with Engine(target=target, draft=draft, threads=2, n_ctx=256, trie=True) as probe:
        fixed = sum(probe.fixed_costs().values())
    layer = max(s.read_bytes for s in layer_segments(GGUFFile(target), 4))
    with Engine(target=target, draft=draft, threads=2, n_ctx=256, trie=True, budget=fixed + 3 * layer) as engine:
        parking = engine.parking
        assert parking is not None and engine.plan.streamed
        assert len(parking.parked_plan.resident) > len(engine.plan.resident)
        assert parking.parked_plan.planned_peak <= engine.budget
        assert f"drafter parked    {len(parking.parked_plan.resident)} layers resident" in engine.describe_plan()
        first = engine.generate(PROMPT, max_tokens=40)
        parking.park()
        parked = engine.generate(PROMPT, max_tokens=40)
        assert parked.stats["drafter_parked"] is True
        assert set(parked.stats["accepted_by_source"]) == {"trie"}
        parking.unpark()
        back = engine.generate(PROMPT, max_tokens=40)
    assert first.tokens == parked.tokens == back.tokens == expected


def test_no_parking_without_a_streamed_target_or_without_the_trie(wide_pair):
    target, draft = wide_pair
    with Engine(target=target, draft=draft, threads=1, n_ctx=256, trie=True) as engine:
        assert engine.parking is None
    with Engine(target=target, draft=draft, threads=1, n_ctx=256, budget="1GiB", trie=False) as engine:
        assert engine.parking is None


# ---- the loop never runs a parked drafter --------------------------------------------------

class CountingModel:
    """A model whose forward passes are counted (prefill goes through forward)."""

    def __init__(self, model: Model):
        self.model = model
        self.calls = 0
        self.config, self.new_cache = model.config, model.new_cache

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.model.forward(*args, **kwargs)

    def prefill(self, tokens, cache, **kwargs):
        self.calls += 1
        return self.model.prefill(tokens, cache, **kwargs)


def counted_merged_drafter(wide_pair, parking) -> tuple[Model, CountingModel, MergedDrafter, list[int]]:
    """The target model, the small model counting its passes, their merged drafter
    with the given parking, and PROMPT's tokens."""
    target, draft = wide_pair
    pool = _core.ThreadPool(2)
    target_model = Model(GGUFFile(target), pool)
    small = CountingModel(Model(GGUFFile(draft), pool))
    drafter = MergedDrafter(TreeDrafter(small, small.new_cache(256)), TrieDrafter(NGramStore(), max_nodes=8),
                            trie_only_depth=None, parking=parking)
    return target_model, small, drafter, Tokenizer.from_metadata(target_model.gguf.metadata).encode(PROMPT)


def test_a_parked_drafter_is_not_run_and_catches_up_when_back(wide_pair):
    parking = SimpleNamespace(parked=True, observe_trie_round=lambda *a: None, observe_model_round=lambda *a: None)
    target_model, small, drafter, prompt = counted_merged_drafter(wide_pair, parking)
    tree_drafter = drafter.tree_drafter
    expected = target_only(wide_pair[0], prompt, 30)

    def run() -> tuple[list[int], SpeculativeStats]:
        stats = SpeculativeStats()
        verifier = TreeVerifier(target_model, target_model.new_cache(256))
        out = [t for t, _ in speculative_generate(verifier, drafter, prompt, 30, FallbackPolicy(),
                                                  lambda t: False, stats=stats)]
        return out, stats

    out, stats = run()
    assert out == expected and small.calls == 0
    assert set(stats.accepted_by_source) <= {"trie"} and stats.passes < 30
    parking.parked = False
    out, stats = run()
    assert out == expected and small.calls > 0
    # Its cache caught up with the first request's prompt and then this one's.
    assert tree_drafter.cache.n >= len(prompt) - 1


def test_parked_mid_request_the_drafter_gives_its_rows_back_and_refills_them_when_back(wide_pair):
    seen = {"model": 0, "trie": 0, "rows_parked": [], "rows_back": []}

    def observe_model_round(*args):
        seen["model"] += 1
        if seen["trie"]:  # back: its rows and the tokens it has yet to run cover the text
            seen["rows_back"].append((tree_drafter.cache.n, len(tree_drafter.pending), len(drafter.text)))
        parking.parked = seen["model"] == 1 and not seen["trie"]  # parks after the first round

    def observe_trie_round(*args):
        seen["trie"] += 1
        seen["rows_parked"].append(tree_drafter.cache.n)
        parking.parked = seen["trie"] < 2  # back after the second

    parking = SimpleNamespace(parked=False, observe_trie_round=observe_trie_round,
                              observe_model_round=observe_model_round)
    target_model, small, drafter, prompt = counted_merged_drafter(wide_pair, parking)
    tree_drafter = drafter.tree_drafter
    expected = target_only(wide_pair[0], prompt, 60)
    verifier = TreeVerifier(target_model, target_model.new_cache(256))
    calls = small.calls
    out = [t for t, _ in speculative_generate(verifier, drafter, prompt, 60, FallbackPolicy(), lambda t: False)]
    assert out == expected and small.calls > calls
    assert seen["rows_parked"] == [0, 0]  # released when it parked
    assert seen["rows_back"], "the drafter never drafted again"
    rows, pending, text = seen["rows_back"][0]
    assert rows >= len(prompt) and rows + pending >= text


def test_merged_trees_stay_within_the_logit_rows_the_plan_counts(wide_pair, monkeypatch):
    target, draft = wide_pair
    sizes = []
    verify = TreeVerifier.verify

    def recording(self, tree, choose):
        sizes.append(len(tree))
        return verify(self, tree, choose)

    monkeypatch.setattr(TreeVerifier, "verify", recording)
    # In the pipeline the small model drafts every round and the trie adds to its tree.
    with Engine(target=target, draft=draft, threads=2, n_ctx=256, trie=True, max_tree_nodes=6,
                pipeline=True) as engine:
        engine.policy.solo_fallback = False  # every round a tree, however slow the tiny drafter
        assert engine.generate(PROMPT, max_tokens=60).tokens == target_only(target, n=60)
        trie_rows = engine.fixed_costs()["drafter trie rows"]
        rows = engine.max_tree_nodes + 1 + engine.trie_nodes
    assert max(sizes) > engine.max_tree_nodes + 1, "no tree took trie nodes past the policy's cap"
    assert max(sizes) <= rows
    # The logit rows the plan counts (the activations' tree rows and the trie's) hold the largest tree's.
    assert 4 * (engine.max_tree_nodes + 1) * engine.target_config.n_vocab + trie_rows >= \
        4 * max(sizes) * engine.target_config.n_vocab
