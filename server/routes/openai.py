"""OpenAI-compatible routes: /v1/embeddings (and /embeddings), /v1/models."""

from __future__ import annotations

from aiohttp import web

from ..errors import invalid
from ..model import Embeddings, ServedModel
from ..protocols import openai
from ..state import CONFIG, REGISTRY
from .common import check_response_size, json_of, json_response, parse_body, render

routes = web.RouteTableDef()


def timing_headers(result: Embeddings) -> dict[str, str]:
    return {
        "X-Truncated-Inputs": str(result.truncated),
        "X-Queue-Time-Ms": f"{result.queue_ns / 1e6:.3f}",
        "X-Inference-Time-Ms": f"{result.compute_ns / 1e6:.3f}",
    }


async def _embed(model: ServedModel, request: openai.EmbeddingsRequest) -> Embeddings:
    if request.texts is not None:
        return await model.embed_texts(request.texts)
    return await model.embed_ids(request.token_ids or [])


@routes.post("/v1/embeddings")
@routes.post("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    config, registry = request.app[CONFIG], request.app[REGISTRY]
    parsed = await parse_body(request, lambda raw: openai.parse_embeddings_request(
        json_of(raw, config.max_inputs), max_inputs=config.max_inputs, max_input_chars=config.max_input_chars))

    def pick() -> ServedModel:
        return registry.get(parsed.model) if parsed.model else registry.default()

    model = pick()
    if parsed.dimensions is not None and parsed.dimensions > model.info.dimension:
        raise invalid(f"'dimensions' must be at most {model.info.dimension} for model {model.info.name}",
                      "dimensions")
    check_response_size(request, parsed.count * (parsed.dimensions or model.info.dimension),
                        binary=parsed.encoding_format == "base64")
    result = await _embed(model, parsed)
    vectors = openai.reduce_dimensions(result.vectors, parsed.dimensions, normalize=model.info.normalize)
    body = await render(
        lambda: openai.build_embeddings_response(model.info.name, vectors, result.token_count,
                                                 parsed.encoding_format),
        vectors.size)
    return json_response(body, headers=timing_headers(result))


@routes.get("/v1/models")
@routes.get("/models")
async def models(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return json_response(openai.build_models_response([(m.info.name, 0) for m in registry]))
