"""A served model: its tokenizer, its queue and inference threads (sharing a session per instance), loaded eagerly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import repository as repo
from .config import ServerConfig
from .errors import ErrorKind, ServerError
from .scheduler import Job, JobResult, WorkQueue
from .session import SessionSpec, available_cpus, create_session, release_freed_memory
from .prompts import PromptSet
from .statistics import ModelStatistics
from .tokenizer import TextTokenizer, Tokenized
from .dispatch import BatchDispatcher, BatchPolicy
from .worker import BatchObserver, InferenceWorker

log = logging.getLogger(__name__)

OUTPUT_NAME = "sentence_embedding"
# Requests with more characters than this are tokenized off the event loop.
INLINE_TOKENIZE_CHARS = 4096
DEFAULT_MAX_BATCH_TOKENS = 2048
T = TypeVar("T")


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


def _instance_specs(entry: repo.ModelEntry, config: ServerConfig) -> list[SessionSpec]:
    kinds = repo.model_config_pb2.ModelInstanceGroup.Kind
    groups = list(entry.config.instance_group) or [repo.model_config_pb2.ModelInstanceGroup(count=1)]
    cuda_options = dict(_config_cuda_options(entry.config))
    cuda_options.update(dict(config.cuda_options))
    specs: list[tuple[Path, str, int]] = []
    for group in groups:
        gpu = config.device == "gpu" or (config.device == "config" and group.kind == kinds.KIND_GPU)
        count = max(1, group.count)
        path = gpu_model_path(entry) if gpu else entry.onnx_path
        for device_id in (list(group.gpus) or [0]) if gpu else [0]:
            specs += [(path, "gpu" if gpu else "cpu", device_id)] * count
    cpu_instances = max(1, sum(1 for _, device, _ in specs if device == "cpu"))
    runners = config.inference_threads or max(1, available_cpus() // cpu_instances)
    intra_op = config.intra_op_threads or max(1, available_cpus() // (cpu_instances * runners))
    return [SessionSpec(path, device, device_id, intra_op if device == "cpu" else 1, config.ort_spinning,
                        tuple(cuda_options.items()), config.inference_niceness, config.cpu_memory_arena,
                        runners if device == "cpu" else 1)
            for path, device, device_id in specs]


def gpu_model_path(entry: repo.ModelEntry) -> Path:
    """GPU instances of an fp32 model run its published fp16 variant (`<name>-fp16`, same version) when present."""
    if entry.parameter(repo.PARAM_PRECISION, "fp32") != "fp32":
        return entry.onnx_path
    variant = entry.directory.parent.parent / f"{entry.name}-fp16" / str(entry.version) / repo.MODEL_FILE
    return variant if variant.is_file() else entry.onnx_path


def _config_cuda_options(config: repo.ModelConfig) -> list[tuple[str, str]]:
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name == "cuda":
            return list(accelerator.parameters.items())
    return []


def _policy(entry: repo.ModelEntry, config: ServerConfig) -> tuple[BatchPolicy, int]:
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
    policy = BatchPolicy(max_batch_size, max_tokens, delay_us / 1e6, config.batch_overhead_tokens)
    return policy, queue_size


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
        self._tokenize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokenize-{info.name}")
        self.broken: BaseException | None = None

    @classmethod
    def load(
        cls,
        entry: repo.ModelEntry,
        config: ServerConfig,
        on_batch: Callable[[str], BatchObserver],
        on_fatal: Callable[[str, BaseException], None],
    ) -> ServedModel:
        """Build sessions, warm every instance with a largest-size batch, start the threads. Blocking."""
        started = time.monotonic()
        max_seq_length = int(entry.parameter(repo.PARAM_MAX_SEQ_LENGTH, "0") or 0)
        if max_seq_length <= 0:
            raise repo.RepositoryError(f"{entry.name}: config.pbtxt lacks parameter {repo.PARAM_MAX_SEQ_LENGTH}")
        PromptSet.from_entry(entry)  # a default_prompt_name that names no prompt fails the load
        tokenizer = TextTokenizer(entry.tokenizer_path, max_seq_length, truncate=config.truncate)
        policy, queue_size = _policy(entry, config)
        stats = ModelStatistics(entry.name, entry.version)
        dispatcher = BatchDispatcher(WorkQueue(queue_size), policy, stats)
        specs = _instance_specs(entry, config)
        workers: list[InferenceWorker] = []
        dimension = 0
        for index, spec in enumerate(specs):
            session = create_session(spec)
            input_names = [i.name for i in session.get_inputs()]
            outputs = {o.name: o for o in session.get_outputs()}
            if OUTPUT_NAME not in outputs or "input_ids" not in input_names or "attention_mask" not in input_names:
                raise repo.RepositoryError(
                    f"{entry.onnx_path}: expected inputs input_ids/attention_mask and output {OUTPUT_NAME}, "
                    f"found inputs {input_names} and outputs {list(outputs)}")
            instance = [
                InferenceWorker(
                    f"infer-{entry.name}-{index}.{thread}", session, input_names, OUTPUT_NAME, tokenizer.pad_id,
                    dispatcher, stats, on_batch(entry.name), lambda exc, name=entry.name: on_fatal(name, exc),
                    spec.niceness)
                for thread in range(spec.inference_threads)
            ]
            dimension = _warm_up(instance[0], tokenizer, policy)
            workers += instance
        info = ModelInfo(
            name=entry.name, version=entry.version, dimension=dimension, max_seq_length=max_seq_length,
            pooling=entry.parameter(repo.PARAM_POOLING, "unknown") or "unknown",
            normalize=(entry.parameter(repo.PARAM_NORMALIZE, "false") or "false").lower() == "true",
            precision="fp16" if specs[0].model_path != entry.onnx_path else (
                entry.parameter(repo.PARAM_PRECISION, "fp32") or "fp32"),
            max_batch_size=policy.max_batch_size, max_batch_tokens=policy.max_batch_tokens,
            max_queue_size=queue_size, device=specs[0].device,
        )
        release_freed_memory()
        for worker in workers:
            worker.start()
        log.info("model %s v%d ready: %d instance(s) on %s, dim %d, warm-up and load %.1fs", info.name,
                 info.version, len(workers), info.device, dimension, time.monotonic() - started)
        return cls(info, tokenizer, dispatcher, workers, stats, config, entry)

    @property
    def healthy(self) -> bool:
        return self.broken is None and all(w.is_alive() for w in self._workers)

    async def tokenize_texts(self, texts: list[str]) -> Tokenized:
        if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
            return self.tokenizer.encode_texts(texts)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._tokenize_pool, self.tokenizer.encode_texts, texts)

    async def tokenize_ids(self, token_lists: list[list[int]]) -> Tokenized:
        if sum(map(len, token_lists)) <= INLINE_TOKENIZE_CHARS:
            return self.tokenizer.encode_ids(token_lists)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._tokenize_pool, self.tokenizer.encode_ids, token_lists)

    async def off_loop(self, work: Callable[[], T], chars: int) -> T:
        """Run tokenizing `work` inline when its input is small (`chars`), else on the model's tokenizer thread."""
        if chars <= INLINE_TOKENIZE_CHARS:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, work)

    async def embed(self, tokenized: Tokenized, *, timeout_ms: int | None = None) -> Embeddings:
        """Queue the sequences and wait for their embeddings (rows in input order)."""
        if self.broken is not None:
            raise ServerError(ErrorKind.UNAVAILABLE, f"model {self.info.name} is not healthy", retry_after_s=5)
        self.stats.record_truncated(tokenized.truncated)
        loop = asyncio.get_running_loop()
        timeout_ms = timeout_ms if timeout_ms is not None else self._config.request_timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        job = Job(tokenized.sequences, loop, loop.create_future(), deadline)
        try:
            self._dispatcher.queue.put(job)
        except ServerError:
            self.stats.record_failure(0)
            raise
        self.stats.change_pending(1)
        job.future.add_done_callback(lambda f: f.cancelled() and self._dispatcher.queue.discard(job))
        try:
            result: JobResult = await job.future
        finally:
            self.stats.change_pending(-1)
        return Embeddings(result.embeddings, tokenized.token_count, tokenized.truncated, result.queue_ns,
                          result.compute_ns)

    def fail_pending(self, error: BaseException) -> None:
        self.broken = error
        self._dispatcher.fail_all(
            ServerError(ErrorKind.UNAVAILABLE, "the inference thread stopped", retry_after_s=5))

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Finish queued work, then end the threads."""
        self._dispatcher.queue.close()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            await loop.run_in_executor(None, worker.join, max(0.0, deadline - time.monotonic()))
        self._dispatcher.fail_all(ServerError(ErrorKind.UNAVAILABLE, "the model was unloaded", retry_after_s=1))
        self._tokenize_pool.shutdown(wait=False)


def _warm_up(worker: InferenceWorker, tokenizer: TextTokenizer, policy: BatchPolicy) -> int:
    """Run the largest batch the policy allows (and a single short text); return the embedding dimension."""
    length = tokenizer.max_seq_length
    count = max(1, min(policy.max_batch_size, policy.max_batch_tokens // length))
    filler = tokenizer.encode_texts(["warm up " * length]).sequences[0]
    output = worker.run_batch_now([filler] * count)
    worker.run_batch_now([tokenizer.encode_texts(["warm up"]).sequences[0]])
    if output.ndim != 2 or output.shape[0] != count or not np.isfinite(output).all():
        raise repo.RepositoryError(f"warm-up produced output of shape {output.shape} or non-finite values")
    return int(output.shape[1])
