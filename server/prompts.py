"""A model's prompts (sentence-transformers' `prompts` / `default_prompt_name`) and which one a request gets.

Precedence, highest first: a literal `prompt`, a `prompt_name` (must be one of the model's, else an error
listing them), a Cohere-style `input_type` (mapped to the first of its candidate names the model defines; no
match means no prompt), the model's `default_prompt_name`. The prompt text is prepended to the input text
before tokenizing, exactly as `SentenceTransformer.encode(text, prompt_name=...)` does, so its tokens count
in `usage` and in truncation the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import repository as repo
from .errors import invalid
from .options import EmbeddingOptions

# Cohere `input_type` -> prompt names tried in order (names used by e5, bge, gte, nomic, arctic, jina, ...).
INPUT_TYPE_PROMPTS: dict[str, tuple[str, ...]] = {
    "search_query": ("search_query", "query", "retrieval.query", "retrieval_query", "web_search_query"),
    "search_document": ("search_document", "document", "passage", "retrieval.passage", "retrieval_document",
                        "corpus"),
    "classification": ("classification",),
    "clustering": ("clustering", "separation"),
}


@dataclass(frozen=True)
class PromptSet:
    prompts: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None

    @classmethod
    def from_entry(cls, entry: repo.ModelEntry) -> PromptSet:
        """From the config.pbtxt parameters; raises RepositoryError when the default names no prompt."""
        prompts, default = entry.prompts()
        return cls(prompts, default)

    def resolve(self, options: EmbeddingOptions) -> str:
        """The text to prepend for a request with `options` ('' for none)."""
        if options.prompt is not None:
            return options.prompt
        if options.prompt_name is not None:
            if options.prompt_name not in self.prompts:
                valid = ", ".join(repr(name) for name in self.prompts) or "none: this model defines no prompts"
                raise invalid(f"unknown prompt_name {options.prompt_name!r}; this model's prompt names: {valid}",
                              "prompt_name")
            return self.prompts[options.prompt_name]
        if options.input_type is not None:
            name = self.name_for_input_type(options.input_type)
            return "" if name is None else self.prompts[name]
        if self.default_name is not None:
            return self.prompts[self.default_name]
        return ""

    def name_for_input_type(self, input_type: str) -> str | None:
        return next((n for n in INPUT_TYPE_PROMPTS.get(input_type, ()) if n in self.prompts), None)

    def describe(self) -> dict:
        """What the model listings show: {"prompts": {name: text}, "default_prompt_name": name or None}."""
        return {"prompts": dict(self.prompts), "default_prompt_name": self.default_name}
