import random

import pytest

from server.batching import padded_tokens, plan_batches


def plan(lengths, size=64, tokens=8192, overhead=32):
    return plan_batches(lengths, max_batch_size=size, max_batch_tokens=tokens, batch_overhead_tokens=overhead)


def test_every_item_is_planned_exactly_once():
    rng = random.Random(1)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = plan(lengths)
    assert sorted(i for b in batches for i in b) == list(range(500))


def test_batches_respect_size_and_token_budget():
    rng = random.Random(2)
    lengths = [rng.randint(1, 256) for _ in range(400)]
    for batch in plan(lengths, size=16, tokens=2048):
        assert len(batch) <= 16
        assert padded_tokens([lengths[i] for i in batch]) <= 2048


def test_item_longer_than_budget_runs_alone():
    batches = plan([10, 5000, 12], tokens=1000)
    assert [1] in batches


def test_grouping_by_length_cuts_padding_against_arrival_order():
    rng = random.Random(3)
    lengths = [rng.choice([8, 12, 16, 200, 250]) for _ in range(256)]
    grouped = sum(padded_tokens([lengths[i] for i in b]) for b in plan(lengths, size=32))
    arrival = sum(padded_tokens(lengths[i:i + 32]) for i in range(0, len(lengths), 32))
    assert grouped < arrival * 0.6


def test_short_and_long_texts_are_not_mixed():
    batches = plan([10] * 8 + [250] * 8, size=64)
    for batch in batches:
        assert len({10 if i < 8 else 250 for i in batch}) == 1


def test_overhead_merges_small_batches():
    lengths = [10, 11, 12, 13]
    assert len(plan(lengths, overhead=0)) == 4  # without overhead, padding alone decides
    assert len(plan(lengths, overhead=32)) == 1


def test_batch_items_come_out_in_ascending_length():
    lengths = [30, 10, 20]
    assert plan(lengths) == [[1, 2, 0]]


def test_empty_and_bad_arguments():
    assert plan([]) == []
    assert plan([9000], tokens=512) == [[0]]  # a lone text runs alone, whatever its length
    with pytest.raises(ValueError):
        plan([1], size=0)
