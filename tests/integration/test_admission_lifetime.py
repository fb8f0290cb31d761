"""A request's admission ticket lives as long as its CPU work (issue 14 review): a cancelled request whose
tokenizer job already runs keeps its tokens reserved until that job ends; one whose job has not started yet
drops the job and releases at once. The real model, loaded in-process."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server import repository as repo
from server.config import ServerConfig
from server.loading import load_model
from server.model import INLINE_TOKENIZE_CHARS, ServedModel

MODEL = "all-MiniLM-L6-v2"
LONG = INLINE_TOKENIZE_CHARS + 1  # characters that send the tokenization to the model's tokenizer thread


class NoEvents:
    def batch_observer(self, model):
        return lambda batch_size, real_tokens, padded_tokens: None

    def thread_died(self, model, error):
        pass


@pytest.fixture
async def model(minilm_repository):
    entry = repo.find_model(minilm_repository, MODEL)
    loaded = await asyncio.get_running_loop().run_in_executor(
        None, load_model, entry, ServerConfig(model_repository=minilm_repository), NoEvents())
    yield loaded
    await loaded.stop(5)


class Gate:
    """Tokenizer work that holds the tokenizer thread until opened."""

    def __init__(self) -> None:
        self.started, self.opened, self.ran = threading.Event(), threading.Event(), []

    def prepare(self, tokenizer):
        self.started.set()
        self.opened.wait(30)
        self.ran.append(True)
        return tokenizer.encode_texts(["held"])


def submit(model: ServedModel, gate: Gate, estimate: int) -> asyncio.Future:
    return asyncio.ensure_future(model.embed_prepared(lambda m: estimate, gate.prepare, lambda t: t, LONG))


async def tokenizer_idle(model: ServedModel) -> None:
    """Returns once every job queued on the tokenizer thread before it is done and its callbacks ran."""
    await model.off_loop(lambda: None, LONG)


async def test_a_cancelled_request_keeps_its_tokens_until_its_running_tokenizer_job_ends(model):
    loop = asyncio.get_running_loop()
    gate = Gate()
    request = submit(model, gate, 500)
    assert await loop.run_in_executor(None, gate.started.wait, 30)
    assert model.reserved_tokens == 500
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert model.reserved_tokens == 500  # its tokenizer job still runs: its tokens are not free yet
    gate.opened.set()
    await tokenizer_idle(model)
    assert model.reserved_tokens == 0 and gate.ran == [True]


async def test_a_cancelled_request_whose_tokenizer_job_waits_drops_it_and_releases_at_once(model):
    loop = asyncio.get_running_loop()
    running, waiting = Gate(), Gate()
    first = submit(model, running, 300)
    assert await loop.run_in_executor(None, running.started.wait, 30)
    second = submit(model, waiting, 200)
    await asyncio.sleep(0)  # let it be admitted and queue its job behind the first
    assert model.reserved_tokens == 500
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert model.reserved_tokens == 300
    running.opened.set()
    waiting.opened.set()
    assert (await first)[1].vectors.shape == (1, 384)
    await tokenizer_idle(model)
    assert waiting.ran == [] and model.reserved_tokens == 0
