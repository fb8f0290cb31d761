"""The token budget a request reserves before it is tokenized."""

import pytest

from server.admission import TokenBudget, estimate_id_tokens, estimate_text_tokens
from server.errors import ErrorKind, ServerError


def test_estimates_cap_each_input_at_max_seq_length():
    assert estimate_text_tokens(["abc", "x" * 10_000], 256, 2) == 5 + 256
    assert estimate_id_tokens([[1, 2, 3], list(range(1000))], 256, 2) == 5 + 256


def test_the_budget_refuses_beyond_its_bound_and_frees_on_release():
    budget = TokenBudget(100)
    first = budget.reserve(60)
    with pytest.raises(ServerError) as info:
        budget.reserve(50)
    assert info.value.kind is ErrorKind.OVERLOADED and info.value.retry_after_s
    first.resize(30)  # the real count, once tokenized
    second = budget.reserve(50)
    assert budget.reserved == 80
    first.release()
    first.release()  # idempotent
    second.release()
    assert budget.reserved == 0


def test_a_request_alone_is_admitted_whatever_its_size_and_zero_means_no_bound():
    lone = TokenBudget(10).reserve(10_000)
    assert lone.tokens == 10_000
    unbounded = TokenBudget(0)
    for _ in range(100):
        unbounded.reserve(1 << 20)
    assert unbounded.reserved == 100 << 20


async def test_a_held_ticket_releases_only_once_the_work_it_holds_for_is_done():
    import asyncio
    from concurrent.futures import Future

    loop = asyncio.get_running_loop()
    budget = TokenBudget(100)
    ticket, work = budget.reserve(40), Future()
    ticket.hold_until(work, loop)
    ticket.release()
    assert budget.reserved == 40
    work.set_result(None)  # its done callback hands the release to the loop
    await loop.run_in_executor(None, lambda: None)  # one more turn of the loop: the release ran
    assert budget.reserved == 0
    ticket.release()
    assert budget.reserved == 0
