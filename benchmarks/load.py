"""The load: closed-loop keep-alive HTTP/1.1 clients (benchmarks.http1) in their own process, and a 20 ms
health probe in another.

Neither shares a GIL with the orchestrator or with each other. The generator warms up, then sets
`started`, runs the measured window (bounded by request count and time), sets `stopped`; the probe
times one keep-alive GET every interval between the two events.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from benchmarks.http1 import Connection, HttpError, post_request
from server.repository import OUTPUT_EMBEDDING, TEXT_INPUT

ERROR_SAMPLES = 5
PROBE_NICENESS = -10


@dataclass(frozen=True)
class LoadSpec:
    url: str
    model: str
    texts: list[str]
    tokens: list[int]
    batch: int
    concurrency: int
    duration: float
    max_requests: int
    warmup: float
    encoding_format: str = "float"
    timeout: float = 120.0
    protocol: str = "openai"  # "openai": POST /v1/embeddings; "kserve": KServe v2 infer, BYTES TEXT input


@dataclass(frozen=True)
class ProbeSpec:
    url: str
    interval: float = 0.02
    timeout: float = 5.0


@dataclass
class Record:
    latencies: list[float] = field(default_factory=list)
    texts: int = 0
    tokens: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(reason)


def request_body(spec: LoadSpec, chunk: list[str]) -> bytes:
    """One request's JSON: OpenAI embeddings, or KServe v2 infer (TEXT [N, 1], JSON output, as a
    tritonclient user without binary data sends it)."""
    import orjson

    if spec.protocol == "kserve":
        tensor = {"name": TEXT_INPUT, "shape": [len(chunk), 1], "datatype": "BYTES", "data": chunk}
        return orjson.dumps({"inputs": [tensor], "outputs": [{"name": OUTPUT_EMBEDDING}]})
    payload = chunk[0] if spec.batch == 1 else chunk
    return orjson.dumps({"model": spec.model, "input": payload, "encoding_format": spec.encoding_format})


def request_bodies(spec: LoadSpec) -> list[tuple[bytes, int, int]]:
    """One pass over the corpus as (body, texts, tokens) per request, serialized once up front."""
    bodies = []
    for start in range(0, len(spec.texts), spec.batch):
        chunk = spec.texts[start : start + spec.batch]
        bodies.append((request_body(spec, chunk), len(chunk), sum(spec.tokens[start : start + spec.batch])))
    return bodies


def embeddings_in(payload: bytes, protocol: str = "openai") -> int:
    """How many embeddings a reply carries (each one present, for KServe: shape [N, dim] and N*dim values)."""
    import orjson

    document = orjson.loads(payload)
    if protocol == "kserve":
        (output,) = [o for o in document["outputs"] if o["name"] == OUTPUT_EMBEDDING]
        rows, dimension = output["shape"]
        return rows if len(output["data"]) == rows * dimension else -1
    return len(document["data"])


async def run_phase(spec: LoadSpec, requests, duration: float, max_requests: int, offset: int) -> Record:
    record = Record()
    counter = itertools.count()
    deadline = time.perf_counter() + duration

    async def client() -> None:
        connection: Connection | None = None
        while (k := next(counter)) < max_requests and time.perf_counter() < deadline:
            request, texts, tokens = requests[(offset + k) % len(requests)]
            start = time.perf_counter()
            try:
                if connection is None or connection.closed:
                    connection = await Connection.open(spec.url)
                status, payload = await connection.send(request, spec.timeout)
            except (OSError, HttpError) as exc:
                record.fail(f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                continue
            if status != 200:
                record.fail(f"HTTP {status}: {payload[:200]!r}")
            elif embeddings_in(payload, spec.protocol) != texts:
                record.fail(f"expected {texts} embeddings")
            else:
                record.latencies.append(time.perf_counter() - start)
                record.texts += texts
                record.tokens += tokens
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client() for _ in range(spec.concurrency)))
    return record


async def drive(spec: LoadSpec, started, stopped) -> dict:
    requests = [(post_request(spec.url, body), texts, tokens) for body, texts, tokens in request_bodies(spec)]
    warm = await run_phase(spec, requests, spec.warmup, len(requests), len(requests) // 2)
    started.set()
    cpu, start = time.process_time(), time.perf_counter()
    record = await run_phase(spec, requests, spec.duration, spec.max_requests, 0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    stopped.set()
    return {
        "wall_s": wall,
        "latencies": record.latencies,
        "texts": record.texts,
        "tokens": record.tokens,
        "errors": record.errors,
        "error_samples": record.error_samples,
        "warmup_errors": warm.errors,
        "generator_cpu_percent": 100 * cpu / wall if wall > 0 else float("nan"),
    }


def generator_main(spec: LoadSpec, started, stopped, results) -> None:
    try:
        results.put(("load", asyncio.run(drive(spec, started, stopped))))
    except Exception as exc:  # noqa: BLE001 - the orchestrator must always hear back
        results.put(("load", {"crashed": f"{type(exc).__name__}: {exc}"}))
    finally:
        started.set()
        stopped.set()


def raise_priority(niceness: int = PROBE_NICENESS) -> None:
    """The probe is the measuring instrument: it should wake on time even while the machine is saturated."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except (OSError, AttributeError):
        pass


def probe_main(spec: ProbeSpec, ready, started, stopped, results) -> None:
    raise_priority()
    parts = urlsplit(spec.url)
    latencies: list[float] = []
    errors = 0
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=spec.timeout)
    ready.set()
    started.wait()
    tick = time.perf_counter()
    while not stopped.is_set():
        start = time.perf_counter()
        try:
            connection.request("GET", parts.path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=spec.timeout)
        tick = max(tick + spec.interval, time.perf_counter())
        stopped.wait(max(0.0, tick - time.perf_counter()))
    connection.close()
    results.put(("probe", {"latencies": latencies, "errors": errors}))


def measure(spec: LoadSpec, probe: ProbeSpec, sampler, limit: float) -> dict:
    """Run one point: probe and generator in spawned processes; `sampler` marks the measured window."""
    context = mp.get_context("spawn")
    ready, started, stopped = context.Event(), context.Event(), context.Event()
    results = context.Queue()
    probe_process = context.Process(
        target=probe_main, args=(probe, ready, started, stopped, results), daemon=True
    )
    generator = context.Process(target=generator_main, args=(spec, started, stopped, results), daemon=True)
    probe_process.start()
    ready.wait(60)
    generator.start()
    deadline = time.monotonic() + limit
    _wait(started, generator, deadline)
    sampler.mark_start()
    _wait(stopped, generator, deadline)
    sampler.mark_stop()
    started.set()
    stopped.set()
    collected = _collect(results, 2, timeout=spec.timeout + 10)
    for process in (generator, probe_process):
        process.join(10)
        if process.is_alive():
            process.kill()
    if "load" not in collected:
        collected["load"] = {"crashed": "the generator returned nothing within the time limit"}
    collected.setdefault("probe", {"latencies": [], "errors": 0})
    return collected


def _wait(event, process, deadline: float) -> None:
    while not event.wait(0.05):
        if not process.is_alive() or time.monotonic() > deadline:
            return


def _collect(results, count: int, timeout: float) -> dict:
    collected = {}
    deadline = time.monotonic() + timeout
    while len(collected) < count and time.monotonic() < deadline:
        try:
            kind, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        collected[kind] = value
    return collected
