"""OpenAI-compatible routes: /embeddings and /models, served under /v1 and at the root (server/app.py)."""

from __future__ import annotations

from aiohttp import web

from ..embedding import chunk_floats, embed_inputs, estimated_chunk_floats
from ..protocols import openai
from ..state import CONFIG, REGISTRY
from ..vectors import postprocess
from .common import check_response_size, json_of, json_response, parse_body, render, timing_headers

routes = web.RouteTableDef()


@routes.post("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    config, registry = request.config_dict[CONFIG], request.config_dict[REGISTRY]
    parsed = await parse_body(request, lambda raw: openai.parse_embeddings_request(
        json_of(raw, config.max_inputs), max_inputs=config.max_inputs, max_input_chars=config.max_input_chars))

    model = registry.named_or_default(parsed.model)
    openai.check_dimensions(parsed.dimensions, model.info.dimension, model.info.name)
    width, binary = parsed.dimensions or model.info.dimension, parsed.encoding_format == "base64"
    check_response_size(request, parsed.count * width + estimated_chunk_floats(
        parsed.texts, parsed.options, config, model.info.max_seq_length, width), binary=binary)
    embedded = await embed_inputs(model, parsed.texts, parsed.token_ids, parsed.options, config)
    result = embedded.result
    check_response_size(request, parsed.count * width + chunk_floats(embedded.chunks, width), binary=binary)

    def reduce(array):  # OpenAI returns what the model gives: unit length again after a cut if it was before
        return postprocess(array, dimensions=parsed.dimensions, normalize=model.info.normalize,
                           model_normalizes=model.info.normalize)

    vectors = reduce(result.vectors)
    chunks = None if embedded.chunks is None else [(reduce(c.vectors), c.spans) for c in embedded.chunks]
    body = await render(
        lambda: openai.build_embeddings_response(model.info.name, vectors, result.token_count,
                                                 parsed.encoding_format, chunks),
        vectors.size + sum(c.size for c, _ in chunks or []))
    return json_response(body, headers=timing_headers(result))


@routes.get("/models")
async def models(request: web.Request) -> web.Response:
    registry = request.config_dict[REGISTRY]
    models = list(registry)
    return json_response(openai.build_models_response([(m.info.name, 0) for m in models],
                                                      [m.prompts.describe() for m in models]))
