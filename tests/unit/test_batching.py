import random

import numpy as np
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


def test_fair_round_gives_every_request_a_turn_in_arrival_order():
    from server.batching import fair_round

    huge, small, medium = [256] * 2048, [5], [10] * 20
    shares = fair_round([huge, small, medium], max_texts=256, max_tokens=8192, turn_texts=64, turn_tokens=2048)
    assert shares[1] == 1 and shares[2] == 20  # the small ones fit in the first turns
    assert shares[0] * 256 + 5 + 200 <= 8192 and shares[0] >= 8  # the huge one: turns until the round is full
    assert fair_round([[5000]], max_texts=8, max_tokens=2048, turn_texts=8, turn_tokens=2048) == [1]  # too long: alone
    assert fair_round([[3] * 5, [3] * 5], max_texts=4, max_tokens=100, turn_texts=1, turn_tokens=100) == [2, 2]
    assert fair_round([], max_texts=4, max_tokens=100, turn_texts=1, turn_tokens=100) == []


def test_the_policy_round_is_bounded_in_texts_and_tokens():
    from server.batching import BatchingPolicy

    policy = BatchingPolicy(64, 2048, 0.0, 32)
    shares = policy.shares([[256] * 2048, [7]])
    assert shares[1] == 1 and sum(shares) <= policy.round_items
    assert shares[0] * 256 <= 2048 * policy.round_batches
    assert sorted(i for batch in policy.split([3, 9, 4]) for i in batch) == [0, 1, 2]


def test_turn_order_is_shortest_first_with_ties_in_arrival_order():
    from server.batching import turn_order

    assert turn_order([30, 5, 20, 5, 7]).tolist() == [1, 3, 4, 2, 0]
    assert turn_order([9]).tolist() == [0] and turn_order([]).tolist() == []


def rounds_cost(policy, lengths, order):
    """(runs, padded tokens) of one request's texts taken round after round in `order`, as the queue does."""
    runs = padded = taken = 0
    in_order = np.asarray(lengths)[order]
    while taken < len(in_order):
        (share,) = policy.shares([in_order[taken:]])
        round_lengths = in_order[taken : taken + share]
        for batch in policy.split(round_lengths):
            runs, padded = runs + 1, padded + padded_tokens(round_lengths[batch])
        taken += share
    return runs, padded


def test_turns_of_like_lengths_make_fewer_and_fuller_runs_than_arrival_order():
    """A bulk request of mixed lengths is taken a round at a time; shortest-first turns let each round split
    into batches as if the whole request had been sorted at once."""
    from server.batching import BatchingPolicy

    policy = BatchingPolicy(64, 2048, 0.0, 32)
    lengths = np.random.default_rng(7).integers(8, 200, size=1000).tolist()
    arrival = rounds_cost(policy, lengths, np.arange(len(lengths)))
    shortest_first = rounds_cost(policy, lengths, policy.turn_order(lengths))
    assert shortest_first[0] < 0.5 * arrival[0] and shortest_first[1] < arrival[1], (shortest_first, arrival)
    assert shortest_first[1] < 1.02 * sum(lengths)
    assert shortest_first[0] <= 1.25 * len(policy.split(lengths))  # nearly the whole request sorted at once


def test_the_policy_takes_at_once_without_a_batching_window():
    from server.batching import BatchingPolicy

    policy = BatchingPolicy(8, 1024, 0.0, 0)
    assert policy.wait_s(queued_texts=1, oldest_waited_s=0.0) == 0.0


def test_the_policy_waits_out_the_window_of_the_oldest_request_unless_a_round_is_queued():
    from server.batching import BatchingPolicy

    policy = BatchingPolicy(8, 1024, 0.002, 0, round_batches=2)
    assert policy.wait_s(queued_texts=1, oldest_waited_s=0.0005) == pytest.approx(0.0015)
    assert policy.wait_s(queued_texts=15, oldest_waited_s=0.0) == pytest.approx(0.002)
    assert policy.wait_s(queued_texts=16, oldest_waited_s=0.0) == 0.0  # a round's worth: no reason to wait
    assert policy.wait_s(queued_texts=1, oldest_waited_s=0.5) == 0.0  # never negative


def test_the_policy_round_and_warm_up_sizes_follow_its_limits():
    from server.batching import BatchingPolicy

    policy = BatchingPolicy(64, 2048, 0.0, 0, round_batches=3)
    assert (policy.round_items, policy.round_tokens) == (192, 6144)
    assert policy.largest_batch(256) == 8 and policy.largest_batch(16) == 64 and policy.largest_batch(4096) == 1


def test_fair_round_takes_a_lone_one_text_request_whatever_its_size():
    from server.batching import fair_round

    for length in (1, 300, 100_000):
        assert fair_round([[length]], max_texts=1, max_tokens=1, turn_texts=1, turn_tokens=1) == [1]
        assert fair_round([[length]], max_texts=64, max_tokens=2048, turn_texts=8, turn_tokens=512) == [1]
