"""A served model at run time: admits, tokenizes and embeds requests through its queue and instances (one
dedicated inference thread each), and stops. Built by server/loading.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from . import repository as repo
from .admission import Ticket, TokenBudget, estimate_text_tokens
from .config import ServerConfig
from .dispatch import BatchDispatcher
from .errors import ErrorKind, ServerError
from .jobs import Job, JobResult
from .prompts import PromptSet
from .statistics import ModelStatistics
from .tokenizer import TextTokenizer, Tokenized
from .worker import InferenceWorker

log = logging.getLogger(__name__)

# Requests with more characters than this are tokenized off the event loop.
INLINE_TOKENIZE_CHARS = 4096
T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # [n, dim] float32
    token_count: int
    truncated: int
    queue_ns: int
    compute_ns: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool
    precision: str
    max_batch_size: int
    max_batch_tokens: int
    max_queue_size: int
    device: str


class ServedModel:
    def __init__(
        self,
        info: ModelInfo,
        tokenizer: TextTokenizer,
        dispatcher: BatchDispatcher,
        workers: list[InferenceWorker],
        stats: ModelStatistics,
        config: ServerConfig,
        entry: repo.ModelEntry,
    ) -> None:
        self.info = info
        self.tokenizer = tokenizer
        self.entry = entry
        self.prompts = PromptSet.from_entry(entry)
        self.stats = stats
        self._dispatcher = dispatcher
        self._workers = workers
        self._config = config
        # One tokenizer thread; what waits for it is bounded by the token budget (requests hold a reservation).
        self._tokenize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokenize-{info.name}")
        self._budget = TokenBudget(config.max_queue_tokens)
        self._specials = len(tokenizer.prefix) + len(tokenizer.suffix)
        self.broken: BaseException | None = None
        self._successor: ServedModel | None = None  # set when a reload replaced this instance

    @property
    def healthy(self) -> bool:
        return self.broken is None and all(w.is_alive() for w in self._workers)

    async def off_loop(self, work: Callable[[], T], chars: int, ticket: Ticket | None = None) -> T:
        """Run tokenizing `work` inline when its input is small (`chars`), else on the model's tokenizer thread.

        If the caller is cancelled meanwhile, work not yet started is dropped; work already running keeps the
        request's `ticket` reserved until it ends (its CPU is spent either way)."""
        if chars <= INLINE_TOKENIZE_CHARS:
            return work()
        job = self._tokenize_pool.submit(work)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if not job.cancel() and ticket is not None:
                ticket.hold_until(job, asyncio.get_running_loop())
            raise

    @property
    def reserved_tokens(self) -> int:
        """Tokens the admitted requests reserve now (bounded by --max-queue-tokens)."""
        return self._budget.reserved

    async def embed_texts(self, texts: list[str], *, timeout_ms: int | None = None,
                          check: Callable[[Tokenized], None] | None = None) -> Embeddings:
        """Admit (from the texts' sizes), tokenize, `check` the tokens, embed; refusals come before tokenizing."""
        _, result = await self.embed_prepared(
            lambda model: estimate_text_tokens(texts, model.info.max_seq_length, model._specials),
            lambda tokenizer: tokenizer.encode_texts(texts), lambda tokenized: tokenized,
            sum(map(len, texts)), timeout_ms=timeout_ms, check=check)
        return result

    async def embed_prepared(self, estimate: Callable[[ServedModel], int], prepare: Callable[[TextTokenizer], P],
                             tokens_of: Callable[[P], Tokenized], chars: int, *, timeout_ms: int | None = None,
                             check: Callable[[Tokenized], None] | None = None) -> tuple[P, Embeddings]:
        """Admit a request from its `estimate` of tokens (before any tokenizing), `prepare` its sequences with
        this model's tokenizer (off the loop beyond INLINE_TOKENIZE_CHARS `chars`), `check` them, embed them.

        The one path of every text request (plain, prompted, left-truncated, chunked): its reservation counts
        against --max-queue-tokens from admission until it is answered, refused or cancelled. Returns what
        `prepare` built (`tokens_of` it gives the sequences) and the embeddings.
        """
        if self._successor is not None:  # reloaded since the route picked this instance
            return await self._successor.embed_prepared(estimate, prepare, tokens_of, chars, timeout_ms=timeout_ms,
                                                        check=check)
        ticket = self._admit(estimate(self))
        try:
            prepared = await self.off_loop(lambda: prepare(self.tokenizer), chars, ticket)
            return prepared, await self._embed_admitted(tokens_of(prepared), ticket, timeout_ms, check)
        finally:
            ticket.release()

    async def tokenize_admitted(self, texts: list[str], prepare: Callable[[TextTokenizer], P]) -> P:
        """Tokenize without embedding (TEI /tokenize): admitted like an embedding request, from the texts' sizes
        against --max-queue-tokens, and holding that reservation while it tokenizes, so the tokenizer work waiting
        behind a flood of such requests is bounded as theirs is. A refusal is no inference failure (statistics
        stay as they are), and tokenizing needs no healthy inference thread."""
        if self._successor is not None:  # reloaded since the route picked this instance
            return await self._successor.tokenize_admitted(texts, prepare)
        ticket = self._budget.reserve(estimate_text_tokens(texts, self.info.max_seq_length, self._specials))
        try:
            return await self.off_loop(lambda: prepare(self.tokenizer), sum(map(len, texts)), ticket)
        finally:
            ticket.release()

    @property
    def special_tokens(self) -> int:
        """How many special tokens the tokenizer puts around one sequence."""
        return self._specials

    async def embed_sequences(self, tokenized: Tokenized, *, timeout_ms: int | None = None) -> Embeddings:
        """Admit and embed sequences that already hold the model's special tokens (KServe's input_ids)."""
        if self._successor is not None:
            return await self._successor.embed_sequences(tokenized, timeout_ms=timeout_ms)
        ticket = self._admit(tokenized.token_count)
        try:
            return await self.embed(tokenized, timeout_ms=timeout_ms)
        finally:
            ticket.release()

    def _admit(self, estimated_tokens: int) -> Ticket:
        if self.broken is not None:
            raise ServerError(ErrorKind.UNAVAILABLE, f"model {self.info.name} is not healthy", retry_after_s=5)
        try:
            self._dispatcher.queue.check_room()
            return self._budget.reserve(estimated_tokens)
        except ServerError:
            self.stats.record_failure(0)
            raise

    async def _embed_admitted(self, tokenized: Tokenized, ticket: Ticket, timeout_ms: int | None,
                              check: Callable[[Tokenized], None] | None) -> Embeddings:
        if check is not None:
            check(tokenized)
        ticket.resize(tokenized.token_count)
        return await self.embed(tokenized, timeout_ms=timeout_ms)

    async def embed(self, tokenized: Tokenized, *, timeout_ms: int | None = None) -> Embeddings:
        """Queue the sequences and wait for their embeddings (rows in input order).

        With a deadline (`timeout_ms`, else --request-timeout-ms), a loop timer fails the request with 503 the
        moment it passes if no batch of it has started computing, and frees its queue slot.
        """
        if self.broken is not None:
            raise ServerError(ErrorKind.UNAVAILABLE, f"model {self.info.name} is not healthy", retry_after_s=5)
        self.stats.record_truncated(tokenized.truncated)
        loop = asyncio.get_running_loop()
        timeout_ms = timeout_ms if timeout_ms is not None else self._config.request_timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        job = Job(tokenized.sequences, loop, loop.create_future(), deadline)
        try:
            self._dispatcher.queue.put(job)
        except ServerError as exc:
            if self._successor is not None and exc.kind is ErrorKind.UNAVAILABLE:  # reloaded while tokenizing
                return await self._successor.embed(tokenized, timeout_ms=timeout_ms)
            self.stats.record_failure(0)
            raise
        self.stats.change_pending(1)
        job.future.add_done_callback(lambda f, job=job: f.cancelled() and self._dispatcher.queue.discard(job))
        if timeout_ms:
            timer = loop.call_later(timeout_ms / 1000, self._dispatcher.expire, job)
            job.future.add_done_callback(lambda f: timer.cancel())
        try:
            result: JobResult = await job.future
        except BaseException:
            # The future keeps the exception, whose traceback keeps this frame: dropping `job` here breaks that
            # cycle, which would hold the request's frames (its body, its arrays) until a full garbage collection.
            del job
            raise
        finally:
            self.stats.change_pending(-1)
        return Embeddings(result.embeddings, tokenized.token_count, tokenized.truncated, result.queue_ns,
                          result.compute_ns)

    def fail_pending(self, error: BaseException) -> None:
        self.broken = error
        self._dispatcher.fail_all(
            ServerError(ErrorKind.UNAVAILABLE, "the inference thread stopped", retry_after_s=5))

    def retire(self, successor: ServedModel) -> None:
        """A reload replaced this instance: requests that reach it from now on go to `successor`."""
        self._successor = successor

    async def stop(self, timeout_s: float | None = 30.0) -> None:
        """Take no new work, let the threads finish everything queued (for at most `timeout_s`; None: until done),
        then answer whatever is left with 503. A retired instance drains fully: its model stays loaded."""
        self._dispatcher.queue.close()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while any(w.is_alive() for w in self._workers) and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        self._dispatcher.fail_all(ServerError(ErrorKind.UNAVAILABLE, "the model was unloaded", retry_after_s=1))
        self._tokenize_pool.shutdown(wait=False)

