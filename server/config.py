"""Server configuration: CLI flags and OES_* environment variables → one frozen ServerConfig."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "OES_"


@dataclass(frozen=True)
class BatchingOverrides:
    """Values that replace a model's config.pbtxt `dynamic_batching` settings when set."""

    max_batch_size: int | None = None
    max_batch_tokens: int | None = None
    max_queue_delay_us: int | None = None
    max_queue_size: int | None = None


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path = Path("models")
    models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "config"
    cuda_options: tuple[tuple[str, str], ...] = ()
    inference_threads: int = 0
    intra_op_threads: int = 0
    ort_spinning: bool = True
    inference_niceness: int = 10
    cpu_memory_arena: bool = True
    batching: BatchingOverrides = field(default_factory=BatchingOverrides)
    batch_overhead_tokens: int = 32
    request_timeout_ms: int | None = None
    truncate: bool = True
    max_inputs: int = 2048
    max_input_chars: int = 1_000_000
    chunking: str = "none"
    chunk_overlap: int = 32
    max_request_bytes: int = 16 * 1024 * 1024
    api_key: str | None = None
    model_control: bool = True
    shutdown_grace_s: float = 30.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.device not in ("config", "cpu", "gpu"):
            raise ValueError(f"device must be config, cpu or gpu, not {self.device!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, not {self.port}")
        if self.intra_op_threads < 0 or self.inference_threads < 0:
            raise ValueError("inference_threads and intra_op_threads must be >= 0 (0 = derived from the CPUs)")
        if not 0 <= self.inference_niceness <= 19:
            raise ValueError("inference_niceness must be 0..19")
        if self.max_inputs < 1 or self.max_request_bytes < 1024:
            raise ValueError("max_inputs must be >= 1 and max_request_bytes >= 1024")
        if self.max_input_chars < 1:
            raise ValueError("max_input_chars must be >= 1")
        if self.chunking not in ("none", "mean", "chunks") or self.chunk_overlap < 0:
            raise ValueError("chunking must be none, mean or chunks, and chunk_overlap >= 0")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _key_values(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _names(text: str) -> tuple[str, ...]:
    return tuple(filter(None, (part.strip() for part in text.split(","))))


# (flag, type, default, help). The env var is OES_ + the flag in upper snake case.
_OPTIONS: list[tuple[str, object, object, str]] = [
    ("--model-repository", Path, Path("models"), "Triton-style model repository to serve."),
    ("--models", _names, (), "Comma-separated model names to load (default: every model in the repository)."),
    ("--host", str, "127.0.0.1", "Address to bind. Use 0.0.0.0 in a container."),
    ("--port", int, 8000, "Port for every route (APIs, health, /metrics)."),
    ("--device", str, "config",
     "Where instances run: 'config' follows each config.pbtxt instance_group; 'cpu' or 'gpu' force it. "
     "GPU instances fail start-up if ONNX Runtime falls back to CPU."),
    ("--cuda-options", _key_values, (),
     "CUDA execution provider options as key=value,... (device_id, gpu_mem_limit, arena_extend_strategy, "
     "cudnn_conv_algo_search, do_copy_in_default_stream, use_tf32); override config.pbtxt's."),
    ("--inference-threads", int, 0,
     "Inference threads per CPU instance, all running the instance's one session (weights and arena held once), "
     "each taking its own batches; 0 = the CPUs this process may use (affinity and cgroup quota) divided among "
     "the CPU instances. Independent single-threaded runs beat one run split across cores when the cores are "
     "shared with the event loop: measured here at c=64, 2 threads x 1 intra-op thread gave ~1.2x the texts/s "
     "of 1 x 2, at the cost of ~1.5 ms more single-request latency (see --intra-op-threads)."),
    ("--intra-op-threads", int, 0,
     "ONNX Runtime intra-op threads per run; 0 = the CPUs left to each inference thread (at least 1). "
     "For lowest single-request latency at light load: --inference-threads 1 --intra-op-threads 0."),
    ("--ort-spinning", _bool, True,
     "Let ONNX Runtime's intra-op threads spin between runs. Off frees those cycles for other work but wakes "
     "the threads for every run: measured here, single-request p50 went from 8.2 to 12.9 ms."),
    ("--inference-niceness", int, 10,
     "How much lower than the event loop the inference threads (and ONNX Runtime's intra-op threads) run, as a "
     "nice increment 0..19: when both want a core, the loop wins, so health checks and request parsing stay "
     "prompt under full load. 0 runs them at the same priority."),
    ("--cpu-memory-arena", _bool, True,
     "ONNX Runtime's CPU memory arena: reuses buffers between runs, but keeps the largest batch's memory."),
    ("--max-batch-size", int, None, "Most texts in one model run (overrides config.pbtxt max_batch_size)."),
    ("--max-batch-tokens", int, None,
     "Most padded tokens (count x longest) in one run; bounds memory and latency of a batch "
     "(overrides the max_batch_tokens parameter)."),
    ("--max-queue-delay-us", int, None,
     "How long a batch may wait for more work (overrides dynamic_batching.max_queue_delay_microseconds). "
     "0 runs as soon as the instance is free, which measured best here."),
    ("--max-queue-size", int, None,
     "Most requests waiting per model; beyond it requests are rejected at once (429 OpenAI/TEI, 503 v2) "
     "with Retry-After (overrides default_queue_policy.max_queue_size)."),
    ("--batch-overhead-tokens", int, 32,
     "Fixed cost of one model run, in token-steps; the batcher trades padding against this when it splits."),
    ("--request-timeout-ms", int, None,
     "Deadline for a request to start computing; a request still queued past it gets 503 without using compute."),
    ("--truncate", _bool, True,
     "Truncate inputs longer than the model's max_seq_length (counted in a metric and a response header); "
     "false rejects them."),
    ("--max-inputs", int, 2048, "Most inputs in one request (OpenAI's limit is 2048)."),
    ("--max-input-chars", int, 1_000_000,
     "Most characters in one input text; longer ones are rejected before tokenizing."),
    ("--chunking", str, "none",
     "Default for requests that do not say: 'none' truncates inputs longer than max_seq_length; 'mean' embeds "
     "them in overlapping token windows and returns the token-weighted mean; 'chunks' also returns each "
     "window's vector and character span."),
    ("--chunk-overlap", int, 32, "Tokens shared by consecutive windows when chunking (default for requests)."),
    ("--max-request-bytes", int, 16 * 1024 * 1024, "Largest request body accepted (413 beyond)."),
    ("--api-key", str, None, "Require 'Authorization: Bearer <key>' on every route but liveness and readiness."),
    ("--model-control", _bool, True, "Allow POST /v2/repository/models/<m>/load and /unload."),
    ("--shutdown-grace-s", float, 30.0,
     "On SIGTERM: readiness turns 503, in-flight requests get this long to finish, then the process exits 0."),
    ("--log-level", str, "INFO", "Python logging level."),
]


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve the sentence-embedding models of a Triton-style ONNX model repository.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, kind, default, help_text in _OPTIONS:
        env = env_name(flag)
        if env in environ:
            try:
                default = kind(environ[env])  # type: ignore[operator]
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{env}={environ[env]!r}: {exc}")
        parser.add_argument(flag, type=kind, default=default, help=f"{help_text} [env {env}]")  # type: ignore[arg-type]
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    environ = os.environ if environ is None else environ
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    try:
        return ServerConfig(
            model_repository=args.model_repository,
            models=tuple(args.models),
            host=args.host,
            port=args.port,
            device=args.device,
            cuda_options=tuple(args.cuda_options),
            inference_threads=args.inference_threads,
            intra_op_threads=args.intra_op_threads,
            ort_spinning=args.ort_spinning,
            inference_niceness=args.inference_niceness,
            cpu_memory_arena=args.cpu_memory_arena,
            batching=BatchingOverrides(
                max_batch_size=args.max_batch_size,
                max_batch_tokens=args.max_batch_tokens,
                max_queue_delay_us=args.max_queue_delay_us,
                max_queue_size=args.max_queue_size,
            ),
            batch_overhead_tokens=args.batch_overhead_tokens,
            request_timeout_ms=args.request_timeout_ms,
            truncate=args.truncate,
            max_inputs=args.max_inputs,
            max_input_chars=args.max_input_chars,
            chunking=args.chunking,
            chunk_overlap=args.chunk_overlap,
            max_request_bytes=args.max_request_bytes,
            api_key=args.api_key or None,
            model_control=args.model_control,
            shutdown_grace_s=args.shutdown_grace_s,
            log_level=args.log_level.upper(),
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
