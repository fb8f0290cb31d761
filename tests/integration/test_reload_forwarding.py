"""A request that picked an instance just before a reload replaced it is served by its successor (issue 14
item 13): real models loaded in-process, no fakes."""

from __future__ import annotations

import asyncio

from server import repository as repo
from server.config import ServerConfig
from server.loading import load_model
from server.model import ServedModel

MODEL = "all-MiniLM-L6-v2"


class NoEvents:
    """The process's side of ModelEvents, ignoring every event."""

    def batch_observer(self, model):
        return lambda batch_size, real_tokens, padded_tokens: None

    def thread_died(self, model, error):
        pass


def load(repository) -> ServedModel:
    entry = repo.find_model(repository, MODEL)
    return load_model(entry, ServerConfig(model_repository=repository), NoEvents())


async def test_a_retired_instance_forwards_new_work_to_its_successor(minilm_repository):
    loop = asyncio.get_running_loop()
    old, new = await asyncio.gather(loop.run_in_executor(None, load, minilm_repository),
                                    loop.run_in_executor(None, load, minilm_repository))
    try:
        tokenized = old.tokenizer.encode_texts(["queued before the reload"])
        before = await old.embed(tokenized)
        old.retire(new)
        await old.stop(None)  # drained: its queue is closed
        late = await old.embed_texts(["picked the old instance", "x " * 3000])  # long: the tokenizer thread
        also = await old.embed(tokenized)  # tokenized on the old one, queued after it closed
        assert late.vectors.shape == (2, 384) and also.vectors.shape == (1, 384)
        assert old.stats.success.count == 1 and new.stats.success.count == 2
        assert abs(float((before.vectors * also.vectors).sum()) - 1.0) < 1e-4
    finally:
        await asyncio.gather(old.stop(5), new.stop(5))
