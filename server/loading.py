"""Loading a model: from its repository entry and the server's config to a warm, started ServedModel.

Reads the entry (max_seq_length, batching, instance groups), builds the tokenizer, the batching policy, the
work queue and dispatcher, one session per SessionSpec (server/layout.py) and one dedicated inference thread per
instance; warms every session with a largest-size batch, then starts the threads. Blocking: callers run it off
the event loop. What the threads report (each batch run, a thread's death) goes to the `ModelEvents` given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
from onnxruntime import InferenceSession

from . import repository as repo
from .batching import BatchingPolicy
from .config import ServerConfig
from .dispatch import BatchDispatcher
from .layout import instance_specs
from .model import ModelInfo, ServedModel
from .prompts import PromptSet
from .session import SessionSpec, create_session, release_freed_memory
from .statistics import ModelStatistics
from .tokenizer import TextTokenizer
from .work_queue import WorkQueue
from .worker import InferenceWorker, thread_name

log = logging.getLogger(__name__)

OUTPUT_NAME = repo.OUTPUT_EMBEDDING
DEFAULT_MAX_BATCH_TOKENS = 2048


class ModelEvents(Protocol):
    """What the process is told about the inference threads of the models it loads (server/app.py implements it).
    The observer and `thread_died` are called on inference threads."""

    def batch_observer(self, model: str) -> Callable[[int, int, int], None]:
        """What is told, for each batch of `model` run, (texts, real tokens, padded tokens), before its answers go
        out; asked once per load."""

    def thread_died(self, model: ServedModel, error: BaseException) -> None:
        """An inference thread of `model` died: the instance, not its name (during a reload the name may already
        belong to its successor)."""


class _InstanceEvents:
    """One model's side of `ModelEvents`, as its inference threads report (server/worker.py: InstanceEvents).
    `model` is set once the ServedModel exists, before any thread starts."""

    def __init__(self, events: ModelEvents, name: str) -> None:
        self._events = events
        self.batch_ran = events.batch_observer(name)
        self.model: ServedModel | None = None

    def thread_died(self, error: BaseException) -> None:
        assert self.model is not None
        self._events.thread_died(self.model, error)


def load_model(entry: repo.ModelEntry, config: ServerConfig, events: ModelEvents,
               cpu_share: int | None = None) -> ServedModel:
    """Build sessions, warm each with a largest-size batch, start one thread per instance. Blocking.

    `cpu_share` is how many CPUs this model's CPU instances may use together (default: all of them).
    """
    started = time.monotonic()
    length = max_seq_length(entry)
    PromptSet.from_entry(entry)  # a default_prompt_name that names no prompt fails the load
    tokenizer = TextTokenizer(entry.tokenizer_path, length, truncate=config.truncate)
    policy, queue_size = batching_policy(entry, config)
    stats = ModelStatistics(entry.name, entry.version)
    dispatcher = BatchDispatcher(WorkQueue(queue_size), policy, stats)
    specs = instance_specs(entry, config, cpu_share)
    instance_events = _InstanceEvents(events, entry.name)
    workers, dimension = _build_instances(entry, specs, tokenizer, dispatcher, stats, instance_events)
    info = _model_info(entry, specs[0], tokenizer, policy, queue_size, dimension)
    model = ServedModel(info, tokenizer, dispatcher, workers, stats, config, entry)
    instance_events.model = model
    release_freed_memory()
    for worker in workers:
        worker.start()
    log.info("model %s v%d ready: %d instance(s) on %s, dim %d, warm-up and load %.1fs", info.name,
             info.version, len(workers), info.device, dimension, time.monotonic() - started)
    return model


def max_seq_length(entry: repo.ModelEntry) -> int:
    """The entry's max_seq_length parameter; a model without one does not load."""
    length = int(entry.parameter(repo.PARAM_MAX_SEQ_LENGTH, "0") or 0)
    if length <= 0:
        raise repo.RepositoryError(f"{entry.name}: config.pbtxt lacks parameter {repo.PARAM_MAX_SEQ_LENGTH}")
    return length


def batching_policy(entry: repo.ModelEntry, config: ServerConfig) -> tuple[BatchingPolicy, int]:
    """The model's batching policy and queue bound: config.pbtxt's, each overridden by its flag when given."""
    overrides = config.batching
    batching = entry.config.dynamic_batching
    max_batch_size = overrides.max_batch_size or entry.config.max_batch_size or 1
    max_tokens = overrides.max_batch_tokens or int(
        entry.parameter(repo.PARAM_MAX_BATCH_TOKENS, str(DEFAULT_MAX_BATCH_TOKENS)))
    delay_us = overrides.max_queue_delay_us
    if delay_us is None:
        delay_us = batching.max_queue_delay_microseconds
    queue_size = overrides.max_queue_size
    if queue_size is None:
        queue_size = batching.default_queue_policy.max_queue_size
    policy = BatchingPolicy(max_batch_size, max_tokens, delay_us / 1e6, config.batch_overhead_tokens)
    return policy, queue_size


def _model_info(entry: repo.ModelEntry, first: SessionSpec, tokenizer: TextTokenizer, policy: BatchingPolicy,
                queue_size: int, dimension: int) -> ModelInfo:
    precision = entry.parameter(repo.PARAM_PRECISION, repo.FP32) or repo.FP32
    return ModelInfo(
        name=entry.name, version=entry.version, dimension=dimension, max_seq_length=tokenizer.max_seq_length,
        pooling=entry.parameter(repo.PARAM_POOLING, "unknown") or "unknown",
        normalize=(entry.parameter(repo.PARAM_NORMALIZE, "false") or "false").lower() == "true",
        precision=repo.FP16 if first.model_path != entry.onnx_path else precision,
        max_batch_size=policy.max_batch_size, max_batch_tokens=policy.max_batch_tokens,
        max_queue_size=queue_size, device=first.device,
    )


def _build_instances(entry: repo.ModelEntry, specs: list[SessionSpec], tokenizer: TextTokenizer,
                     dispatcher: BatchDispatcher, stats: ModelStatistics,
                     events: _InstanceEvents) -> tuple[list[InferenceWorker], int]:
    """Build and warm every session; one (not yet started) inference thread per instance. Returns the threads
    and the embedding dimension."""
    workers: list[InferenceWorker] = []
    dimension = 0
    for spec in specs:
        session = _checked(create_session(spec), entry)
        inputs = [i.name for i in session.get_inputs()]
        instance = [
            InferenceWorker(thread_name(entry.name, len(workers) + k), session, inputs, OUTPUT_NAME,
                            tokenizer.pad_id, dispatcher, stats, events, spec.niceness)
            for k in range(spec.instances)
        ]
        dimension = _warm_up(instance[0], tokenizer, dispatcher.policy)
        workers += instance
    return workers, dimension


def _checked(session: InferenceSession, entry: repo.ModelEntry) -> InferenceSession:
    """The session, if its graph has the inputs and output the server feeds and reads."""
    input_names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if OUTPUT_NAME not in outputs or repo.INPUT_IDS not in input_names or repo.ATTENTION_MASK not in input_names:
        raise repo.RepositoryError(
            f"{entry.onnx_path}: expected inputs {repo.INPUT_IDS}/{repo.ATTENTION_MASK} and output {OUTPUT_NAME}, "
            f"found inputs {input_names} and outputs {outputs}")
    return session


def _warm_up(worker: InferenceWorker, tokenizer: TextTokenizer, policy: BatchingPolicy) -> int:
    """Run the largest batch the policy allows (and a single short text); return the embedding dimension."""
    count = policy.largest_batch(tokenizer.max_seq_length)
    output = worker.run_batch_now([_longest_sequence(tokenizer)] * count)
    worker.run_batch_now([tokenizer.encode_texts(["warm up"]).sequences[0]])
    if output.ndim != 2 or output.shape[0] != count or not np.isfinite(output).all():
        raise repo.RepositoryError(f"warm-up produced output of shape {output.shape} or non-finite values")
    return int(output.shape[1])


def _longest_sequence(tokenizer: TextTokenizer) -> np.ndarray:
    """A sequence of exactly max_seq_length tokens, built from token ids: it fits whether or not the server
    truncates (a long text would be refused by a server started with --truncate false)."""
    words = tokenizer.encode_texts(["warm up"]).sequences[0]
    words = words[len(tokenizer.prefix): len(words) - len(tokenizer.suffix)]
    room = max(1, tokenizer.max_seq_length - len(tokenizer.prefix) - len(tokenizer.suffix))
    return tokenizer.encode_ids([np.resize(words, room).tolist()]).sequences[0]
