"""TEI-compatible routes on the default model: /embed, /tokenize, /info (semantics in protocols/tei.py)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..config import ServerConfig
from ..model import INLINE_TOKENIZE_CHARS, Embeddings, ServedModel
from ..protocols import tei
from ..state import CONFIG, REGISTRY
from ..tokenizer import Tokenized
from .common import check_response_size, json_of, json_response, parse_body, render
from .docs import server_version

routes = web.RouteTableDef()


def _headers(result: Embeddings) -> dict[str, str]:
    return {
        "x-compute-tokens": str(result.token_count),
        "x-queue-time": f"{result.queue_ns / 1e6:.3f}",
        "x-inference-time": f"{result.compute_ns / 1e6:.3f}",
        "X-Truncated-Inputs": str(result.truncated),
    }


@routes.post("/embed")
async def embed(request: web.Request) -> web.Response:
    config, model = request.app[CONFIG], request.app[REGISTRY].default()  # the body is already read (middleware)
    parsed = await parse_body(request, lambda raw: tei.parse_embed_request(
        json_of(raw, config.max_inputs), max_inputs=config.max_inputs, dimension=model.info.dimension,
        max_input_chars=config.max_input_chars))
    check_response_size(request, parsed.count * (parsed.dimensions or model.info.dimension))

    def refuse_truncated(tokenized: Tokenized) -> None:
        if parsed.truncate is False and tokenized.truncated:
            raise tei.too_long(tokenized.truncated, model.info.max_seq_length)

    if parsed.texts is not None:
        result = await model.embed_texts(parsed.texts, check=refuse_truncated)
    else:
        result = await model.embed_ids(parsed.token_ids or [], check=refuse_truncated)
    vectors = tei.postprocess(result.vectors, dimensions=parsed.dimensions, normalize=parsed.normalize,
                              normalized=model.info.normalize)
    body = await render(lambda: tei.build_embed_response(vectors), vectors.size)
    return json_response(body, headers=_headers(result))



@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    parsed = await parse_body(request, lambda raw: tei.parse_tokenize_request(
        json_of(raw, config.max_inputs), max_inputs=config.max_inputs, max_input_chars=config.max_input_chars))
    model = request.app[REGISTRY].default()

    def build() -> bytes:
        return tei.build_tokenize_response([tei.simple_tokens(text, model.tokenizer.tokens(text),
                                                              parsed.add_special_tokens)
                                            for text in parsed.texts])

    if sum(map(len, parsed.texts)) <= INLINE_TOKENIZE_CHARS:
        return json_response(build())
    return json_response(await asyncio.get_running_loop().run_in_executor(None, build))


def _info_fields(model: ServedModel, config: ServerConfig) -> tei.InfoFields:
    info = model.info
    return tei.InfoFields(
        model_id=info.name, precision=info.precision, pooling=info.pooling,
        max_concurrent_requests=info.max_queue_size, max_input_length=info.max_seq_length,
        max_batch_tokens=info.max_batch_tokens, max_batch_requests=info.max_batch_size,
        max_client_batch_size=config.max_inputs, auto_truncate=config.truncate, version=server_version())


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    model = request.app[REGISTRY].default()
    return json_response(tei.build_info(_info_fields(model, request.app[CONFIG])))
