"""TEI-compatible routes: /embed, /tokenize, /info (semantics in protocols/tei.py). /embed and /tokenize use the
model their body names in `model` (this server's extension), else the default model; /info describes the default
model."""

from __future__ import annotations

from aiohttp import web

from ..config import ServerConfig
from ..embedding import CHARS_PER_TOKEN_ESTIMATE, chunk_floats, embed_inputs, estimated_chunk_floats
from ..errors import ErrorKind, ServerError
from ..model import Embeddings, ServedModel
from ..protocols import tei
from ..response_limit import check_response_bytes
from ..state import CONFIG, REGISTRY
from ..vectors import postprocess
from .common import check_response_size, json_of, json_response, parse_body, render, server_version

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
    config, registry = request.config_dict[CONFIG], request.config_dict[REGISTRY]  # body read (middleware)

    def parse(raw: bytes) -> tuple[ServedModel, tei.EmbedRequest]:
        body = json_of(raw, config.max_inputs)
        model = registry.named_or_default(tei.requested_model(body))
        return model, tei.parse_embed_request(body, max_inputs=config.max_inputs, dimension=model.info.dimension,
                                              max_input_chars=config.max_input_chars)

    model, parsed = await parse_body(request, parse)
    width = parsed.dimensions or model.info.dimension
    check_response_size(request, parsed.count * width + estimated_chunk_floats(
        parsed.texts, parsed.options, config, model.info.max_seq_length, width))

    def too_long(count: int) -> ServerError:
        return tei.too_long(count, model.info.max_seq_length)

    embedded = await embed_inputs(model, parsed.texts, parsed.token_ids, parsed.options, config,
                                  on_truncated=too_long if parsed.truncate is False else None)
    result, chunks = embedded.result, embedded.chunks
    check_response_size(request, parsed.count * width + chunk_floats(chunks, width))

    def post(array):
        return postprocess(array, dimensions=parsed.dimensions, normalize=parsed.normalize,
                           model_normalizes=model.info.normalize)

    if chunks is not None:
        pairs = [(post(c.vectors), c.spans) for c in chunks]
        body = await render(lambda: tei.build_chunks_response(pairs), sum(v.size for v, _ in pairs))
    else:
        vectors = post(result.vectors)
        body = await render(lambda: tei.build_embed_response(vectors), vectors.size)
    return json_response(body, headers=_headers(result))


@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    """Bounded like /embed: admitted against the model's token budget (--max-queue-tokens) before tokenizing,
    the response's least size checked before tokenizing (--max-response-bytes) and its size from the tokens before
    it is built; tokenizing takes the model's path (inline when small)."""
    config, registry = request.config_dict[CONFIG], request.config_dict[REGISTRY]

    def parse(raw: bytes) -> tuple[ServedModel, tei.TokenizeRequest]:
        body = json_of(raw, config.max_inputs)
        return registry.named_or_default(tei.requested_model(body)), tei.parse_tokenize_request(body, max_inputs=config.max_inputs,
                                                                  max_input_chars=config.max_input_chars)

    model, parsed = await parse_body(request, parse)
    check_response_bytes(tei.least_tokenize_response_bytes(parsed.texts, model.info.max_seq_length,
                                                           CHARS_PER_TOKEN_ESTIMATE),
                         limit=config.max_response_bytes)
    token_lists = await model.tokenize_admitted(parsed.texts,
                                                lambda tokenizer: [tokenizer.tokens(text) for text in parsed.texts])
    check_response_bytes(tei.tokenize_response_bytes(token_lists), limit=config.max_response_bytes)
    body = await render(lambda: tei.build_tokenize_response(parsed.texts, token_lists, parsed.add_special_tokens),
                        sum(map(len, token_lists)))
    return json_response(body)


def _info_fields(model: ServedModel, config: ServerConfig) -> tei.InfoFields:
    info = model.info
    return tei.InfoFields(
        model_id=info.name, precision=info.precision, pooling=info.pooling,
        max_concurrent_requests=info.max_queue_size, max_input_length=info.max_seq_length,
        max_batch_tokens=info.max_batch_tokens, max_batch_requests=info.max_batch_size,
        max_client_batch_size=config.max_inputs, auto_truncate=config.truncate, version=server_version(),
        prompts=model.prompts.describe())


# TEI routes this server does not serve: 404 in TEI's shape, as from a TEI server without them.
@routes.route("*", "/embed_all")
@routes.route("*", "/embed_sparse")
@routes.route("*", "/decode")
@routes.route("*", "/rerank")
@routes.route("*", "/predict")
@routes.route("*", "/similarity")
async def not_served(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.NOT_FOUND, "no such route")


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    model = request.config_dict[REGISTRY].default()
    return json_response(tei.build_info(_info_fields(model, request.config_dict[CONFIG])))
