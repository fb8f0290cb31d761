"""KServe v2 / Triton HTTP routes: metadata, readiness, config, inference, statistics, model repository."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from ..embedding import TextEmbeddings, check_token_id_options, chunk_tensors, default_chunking, embed_texts
from ..errors import ErrorKind, ServerError, invalid
from ..options import CHUNKS
from ..model import ServedModel
from ..protocols import kserve
from ..repository import model_config_json
from ..state import CONFIG, REGISTRY
from ..tokenizer import Tokenized
from .common import json_response, render
from .docs import server_version
from .openai import timing_headers

routes = web.RouteTableDef()

MODEL = "/v2/models/{model}"
VERSIONED = "/v2/models/{model}/versions/{version:[0-9]+}"


def _model(request: web.Request) -> ServedModel:
    return request.app[REGISTRY].get(request.match_info["model"], request.match_info.get("version"))


async def _optional_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None


@routes.get("/v2")
async def server_metadata(request: web.Request) -> web.Response:
    return json_response(kserve.server_metadata(server_version()))


@routes.get("/v2/models/stats")
async def all_stats(request: web.Request) -> web.Response:
    return json_response(kserve.stats([model.stats.as_json() for model in request.app[REGISTRY]]))


@routes.get(MODEL)
@routes.get(VERSIONED)
async def model_metadata(request: web.Request) -> web.Response:
    info = _model(request).info
    return json_response(kserve.model_metadata(info.name, [str(info.version)], info.dimension))


@routes.get(MODEL + "/ready")
@routes.get(VERSIONED + "/ready")
async def model_ready(request: web.Request) -> web.Response:
    try:
        ready = _model(request).healthy
    except ServerError:
        ready = False
    if not ready:
        raise invalid("Model version not ready")
    return web.Response(status=200)


@routes.get(MODEL + "/config")
@routes.get(VERSIONED + "/config")
async def model_config(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(model_config_json(_model(request).entry.config)))


@routes.get(MODEL + "/stats")
@routes.get(VERSIONED + "/stats")
async def model_stats(request: web.Request) -> web.Response:
    return json_response(kserve.stats([_model(request).stats.as_json()]))


async def _embed(model: ServedModel, parsed: kserve.InferRequest, config, timeout_ms: int | None
                 ) -> TextEmbeddings:
    if parsed.texts is not None:
        return await embed_texts(model, parsed.texts, parsed.options, config, timeout_ms=timeout_ms)
    check_token_id_options(parsed.options)
    sequences = kserve.sequences_from_ids(parsed.input_ids, parsed.attention_mask,  # type: ignore[arg-type]
                                          vocab_size=model.tokenizer.vocab_size,
                                          max_seq_length=model.info.max_seq_length)
    result = await model.embed(Tokenized(sequences=sequences, truncated=0), timeout_ms=timeout_ms)
    return TextEmbeddings(result, None)


def _wants_chunks(parsed: kserve.InferRequest, config) -> bool:
    """Whether the request embeds in windows with mode 'chunks' (the server's default applies to texts)."""
    options = parsed.options
    if parsed.texts is not None:
        options = options.with_default_chunking(default_chunking(config))
    return options.chunking is not None and options.chunking.mode == CHUNKS


@routes.post(MODEL + "/infer")
@routes.post(VERSIONED + "/infer")
async def infer(request: web.Request) -> web.Response:
    model, config = _model(request), request.app[CONFIG]
    parsed = kserve.parse_infer_request(await request.read(), request.headers.get(kserve.HEADER_LENGTH),
                                        model=model.info.name, max_inputs=config.max_inputs)
    outputs = kserve.outputs_for(parsed, chunks=_wants_chunks(parsed, config))
    embedded = await _embed(model, parsed, config, kserve.timeout_ms(parsed.timeout_us, config.request_timeout_ms))
    result = embedded.result
    extra = None if embedded.chunks is None else chunk_tensors(embedded.chunks, model.info.dimension)
    build = partial(kserve.build_infer_response, model=model.info.name, version=str(model.info.version),
                    request_id=parsed.id, vectors=result.vectors, outputs=outputs, extra=extra)
    body, header_length = await render(build, result.vectors.size + sum(a.size for a in (extra or {}).values()))
    headers = timing_headers(result)
    if header_length is None:
        return json_response(body, headers=headers)
    headers[kserve.HEADER_LENGTH] = str(header_length)
    return web.Response(body=body, headers=headers, content_type="application/octet-stream")


@routes.post("/v2/repository/index")
async def repository_index(request: web.Request) -> web.Response:
    body = await _optional_json(request)
    return json_response(kserve.repository_index(request.app[REGISTRY].index(), body))


async def _checked_control_request(request: web.Request) -> str:
    if not request.app[CONFIG].model_control:
        raise invalid("explicit model load / unload is not allowed: the server runs with "
                      "--model-control false")
    kserve.check_load_request(await _optional_json(request))
    return request.match_info["model"]


@routes.post("/v2/repository/models/{model}/load")
async def load_model(request: web.Request) -> web.Response:
    name = await _checked_control_request(request)
    await asyncio.shield(request.app[REGISTRY].load(name))
    return web.Response(status=200)


@routes.post("/v2/repository/models/{model}/unload")
async def unload_model(request: web.Request) -> web.Response:
    name = await _checked_control_request(request)
    await asyncio.shield(request.app[REGISTRY].unload(name))
    return web.Response(status=200)


@routes.route("*", "/v2/repository/{repository}/index")
@routes.route("*", "/v2/repository/{repository}/models/{model}/{action}")
async def named_repository(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.UNSUPPORTED, "'repository_name' specification is not supported")


@routes.route("*", "/v2/systemsharedmemory{tail:.*}")
@routes.route("*", "/v2/cudasharedmemory{tail:.*}")
@routes.route("*", "/v2/trace/setting")
@routes.route("*", MODEL + "/trace/setting")
@routes.route("*", "/v2/logging")
async def unsupported(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.UNSUPPORTED, f"{request.path} is not supported by this server")
