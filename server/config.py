"""Server configuration: CLI flags and OES_* environment variables → one frozen ServerConfig."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "OES_"
C = TypeVar("C")


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
    grpc: bool = True
    grpc_port: int = 8001
    device: str = "config"
    cuda_options: tuple[tuple[str, str], ...] = ()
    instance_count: int = 0
    intra_op_threads: int = 0
    ort_spinning: bool = True
    inference_niceness: int = 10
    cpu_memory_arena: bool = True
    batching: BatchingOverrides = field(default_factory=BatchingOverrides)
    batch_overhead_tokens: int = 32
    max_queue_tokens: int = 1 << 20
    request_timeout_ms: int | None = None
    truncate: bool = True
    max_inputs: int = 2048
    chunking: str = "none"
    chunk_overlap: int = 32
    max_request_bytes: int = 16 * 1024 * 1024
    api_key: str | None = None
    model_control: bool = False
    shutdown_grace_s: float = 30.0
    log_level: str = "INFO"
    # Limits and protections (README "Limits and protections").
    max_input_chars: int = 2_000_000
    max_response_bytes: int = 64 * 1024 * 1024
    body_timeout_s: float = 30.0
    header_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 75.0
    max_connections: int = 1024
    grpc_stream_in_flight: int = 64

    def __post_init__(self) -> None:
        if self.device not in ("config", "cpu", "gpu"):
            raise ValueError(f"device must be config, cpu or gpu, not {self.device!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, not {self.port}")
        if not 0 <= self.grpc_port < 65536:
            raise ValueError(f"grpc_port must be 0..65535, not {self.grpc_port}")
        if self.intra_op_threads < 0 or self.instance_count < 0:
            raise ValueError("instance_count and intra_op_threads must be >= 0 (0 = config.pbtxt / the CPUs)")
        if not 0 <= self.inference_niceness <= 19:
            raise ValueError("inference_niceness must be 0..19")
        if self.max_queue_tokens < 0:
            raise ValueError("max_queue_tokens must be >= 0 (0 = no bound)")
        if self.max_inputs < 1 or self.max_request_bytes < 1024:
            raise ValueError("max_inputs must be >= 1 and max_request_bytes >= 1024")
        if self.chunking not in ("none", "mean", "chunks") or self.chunk_overlap < 0:
            raise ValueError("chunking must be none, mean or chunks, and chunk_overlap >= 0")
        self._check_limits()

    def _check_limits(self) -> None:
        if self.max_input_chars < 1 or self.max_response_bytes < 1024:
            raise ValueError("max_input_chars must be >= 1 and max_response_bytes >= 1024")
        if self.grpc_stream_in_flight < 1:
            raise ValueError("grpc_stream_in_flight must be >= 1")
        if self.body_timeout_s <= 0 or self.max_connections < 1 or self.shutdown_grace_s < 0:
            raise ValueError("body_timeout_s must be > 0, max_connections >= 1 and shutdown_grace_s >= 0")
        if self.header_timeout_s <= 0 or self.keep_alive_timeout_s <= 0:
            raise ValueError("header_timeout_s and keep_alive_timeout_s must be > 0")
        if self.model_control and not self.api_key and not binds_loopback_only(self.host):
            raise ValueError(f"--model-control true without --api-key is refused on host {self.host!r}: anyone who "
                             "reaches the port could load and unload models; set an API key or bind 127.0.0.1")


def binds_loopback_only(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    ("--port", int, 8000, "Port for every HTTP route (APIs, health, /metrics)."),
    ("--grpc", _bool, True,
     "Serve KServe v2 over gRPC (inference.GRPCInferenceService and grpc.health.v1.Health) beside HTTP, "
     "in the same process, sharing the models and batches."),
    ("--grpc-port", int, 8001, "Port of the gRPC server (Triton's default); 0 picks a free port and logs it."),
    ("--device", str, "config",
     "Where instances run: 'config' follows each config.pbtxt instance_group; 'cpu' or 'gpu' force it. "
     "GPU instances fail start-up if ONNX Runtime falls back to CPU."),
    ("--cuda-options", _key_values, (),
     "CUDA execution provider options as key=value,... (device_id, gpu_mem_limit, arena_extend_strategy, "
     "cudnn_conv_algo_search, do_copy_in_default_stream, use_tf32); override config.pbtxt's."),
    ("--instance-count", int, 0,
     "Instances per model, each running in its own dedicated inference thread (overrides the count of "
     "config.pbtxt's instance_group, whose kind is kept); 0 = config.pbtxt's count (1 as exported). CPU instances "
     "of a model share one ONNX Runtime session (weights held once) and split the model's CPUs between them."),
    ("--intra-op-threads", int, 0,
     "ONNX Runtime intra-op threads per CPU instance (inter-op is always 1); 0 = the CPUs this process may use "
     "(affinity and cgroup quota), divided among the models loaded at start-up, then among each model's "
     "instances (at least 1)."),
    ("--ort-spinning", _bool, True,
     "Let ONNX Runtime's intra-op threads spin between runs. Off frees those cycles for other work but wakes "
     "the threads for every run, which adds latency to each request."),
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
     "0 runs as soon as an instance is free."),
    ("--max-queue-size", int, None,
     "Most requests waiting per model (queued, none of their texts computing yet: Triton's meaning); beyond it "
     "requests are rejected at once, before tokenizing (429 OpenAI/TEI, 503 v2) with Retry-After (overrides "
     "default_queue_policy.max_queue_size)."),
    ("--max-queue-tokens", int, 1 << 20,
     "Most tokens per model admitted and not yet answered (being tokenized, queued or computing), counted "
     "before tokenizing from each text's characters (at most max_seq_length per text) and corrected after; "
     "beyond it requests are refused at once like a full queue (429 OpenAI/TEI, 503 v2), before their "
     "tokenization is paid for. A request alone is always admitted. 0 = no bound. --max-queue-size still "
     "counts requests (Triton's meaning); both apply."),
    ("--batch-overhead-tokens", int, 32,
     "Fixed cost of one model run, in token-steps; the batcher trades padding against this when it splits."),
    ("--request-timeout-ms", int, None,
     "Deadline for a request to start computing, from when it is queued; at the deadline a request none of whose "
     "texts has started computing gets 503 (Retry-After) at once, frees its queue slot and costs no compute."),
    ("--truncate", _bool, True,
     "Truncate inputs longer than the model's max_seq_length (counted in a metric and a response header); "
     "false rejects them."),
    ("--max-inputs", int, 2048, "Most inputs in one request (OpenAI's limit is 2048)."),
    ("--chunking", str, "none",
     "Default for requests that do not say: 'none' truncates inputs longer than max_seq_length; 'mean' embeds "
     "them in overlapping token windows and returns the token-weighted mean; 'chunks' also returns each "
     "window's vector and character span."),
    ("--chunk-overlap", int, 32, "Tokens shared by consecutive windows when chunking (default for requests)."),
    ("--max-request-bytes", int, 16 * 1024 * 1024,
     "Largest request body accepted (413 beyond), and largest gRPC message (RESOURCE_EXHAUSTED beyond)."),
    ("--api-key", str, None, "Require 'Authorization: Bearer <key>' on every route but liveness and readiness."),
    ("--model-control", _bool, False,
     "Allow POST /v2/repository/models/<m>/load and /unload (off by default, as in Triton). Refused at start-up "
     "without --api-key unless --host is a loopback address."),
    ("--shutdown-grace-s", float, 30.0,
     "On SIGTERM: readiness turns 503 at once, requests in flight (and new ones) are served for at most this "
     "long in total, then connections close, the models stop and the process exits 0. Repeated SIGTERMs are "
     "logged and change nothing; SIGKILL ends it at once."),
    ("--log-level", str, "INFO", "Python logging level."),
    # Limits and protections.
    ("--max-input-chars", int, 2_000_000,
     "Most characters in one input text, checked before tokenizing (400 OpenAI/KServe, 422 TEI beyond); "
     "large enough for a 1 MB document."),
    ("--max-response-bytes", int, 64 * 1024 * 1024,
     "Largest response body the server builds; a request whose answer would be larger gets 400 (422 TEI) "
     "before its vectors are serialized."),
    ("--body-timeout-s", float, 30.0,
     "Time a client has to send the whole request body once its headers arrived; slower ones get 408 and the "
     "connection is closed."),
    ("--header-timeout-s", float, 30.0,
     "Time a client has, from the first byte of a request, to send its request line and headers; slower ones "
     "are disconnected (a connection trickling headers cannot hold a slot)."),
    ("--keep-alive-timeout-s", float, 75.0,
     "Time an idle connection (no request, none in progress) stays open before the server closes it; keep it "
     "above a load balancer's idle timeout (60 s on AWS ALB)."),
    ("--max-connections", int, 1024,
     "Most open client connections; beyond it a new connection gets 503 with Retry-After and is closed. "
     "The open-files limit is raised to its hard limit at start."),
    ("--grpc-stream-in-flight", int, 64,
     "Most requests of one gRPC ModelStreamInfer stream running at once; the stream is read on as they "
     "finish (backpressure, no error)."),
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


# Flags that were removed, with what to use instead.
_REMOVED = {
    "--inference-threads": "each model instance now runs in one dedicated inference thread; for more threads use "
                           "--instance-count N (env OES_INSTANCE_COUNT) or instance_group { count: N } in config.pbtxt",
}


def _refuse_removed(parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]) -> None:
    for flag, advice in _REMOVED.items():
        if any(arg == flag or arg.startswith(flag + "=") for arg in argv):
            parser.error(f"{flag} was removed: {advice}")
        if env_name(flag) in environ:
            parser.error(f"{env_name(flag)} was removed: {advice}")


def from_arguments(cls: type[C], args: argparse.Namespace, **given: Any) -> C:
    """The frozen dataclass `cls` from parsed arguments: each field not in `given` takes the value of the argument
    of the same name (`--max-inputs` -> `max_inputs`); a field no argument names keeps its default."""
    taken = {f.name: getattr(args, f.name) for f in fields(cls)  # type: ignore[arg-type]
             if f.init and f.name not in given and hasattr(args, f.name)}
    return cls(**taken, **given)


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    environ = os.environ if environ is None else environ
    parser = build_parser(environ)
    argv = list(sys.argv[1:] if argv is None else argv)
    _refuse_removed(parser, argv, environ)
    args = parser.parse_args(argv)
    try:
        return from_arguments(ServerConfig, args, batching=from_arguments(BatchingOverrides, args),
                              api_key=args.api_key or None, log_level=args.log_level.upper())
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
