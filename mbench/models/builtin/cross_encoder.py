"""sentence-transformers CrossEncoder rerankers for text tasks: `--reranker cross-encoder --reranker-arg name=...`.

Offline only: ``name`` is a local model directory or a hub id already in the Hugging Face cache
(e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``); nothing is downloaded. Each pair is the query
text and the candidate text (a BEIR document is already ``title + " " + text``), tokenized
together and truncated to ``max_length`` tokens (the model's own limit when unset).

Score: the model's single relevance logit, with no activation. CrossEncoder's default sigmoid
is monotone, so the ranking is the same, and raw logits keep distinct scores apart where a
sigmoid would saturate to equal floats. Models with more than one output label (NLI
classifiers) are refused: they do not produce one relevance score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import ModelMeta, check_items
from mbench.models.builtin.hub import resolve_model_dir

PLUGIN_VERSION = "1"
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TEXT_ONLY = frozenset({"text"})


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder scoring (query text, candidate text) pairs."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        revision: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise MbenchError(f"cross-encoder: batch_size must be >= 1, got {batch_size}")
        if max_length is not None and max_length < 1:
            raise MbenchError(f"cross-encoder: max_length must be >= 1, got {max_length}")
        dtype = dtype or "float32"
        if dtype not in _DTYPES:
            raise MbenchError(f"cross-encoder: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        from sentence_transformers import CrossEncoder

        model_dir, resolved_revision = resolve_model_dir(name, revision, plugin="cross-encoder")
        try:
            self.model = CrossEncoder(
                str(model_dir),
                device=device,
                local_files_only=True,
                max_length=max_length,
                model_kwargs={"dtype": _DTYPES[dtype]},
            )
        except OSError as err:
            raise MbenchError(f"cross-encoder: {model_dir} is not a CrossEncoder model directory ({err})") from err
        num_labels = self.model.num_labels
        if num_labels != 1:
            raise MbenchError(
                f"cross-encoder model {name!r} has {num_labels} output labels; a reranker needs a model with one "
                "relevance logit (e.g. cross-encoder/ms-marco-MiniLM-L6-v2)"
            )
        self.batch_size = batch_size
        self.meta = ModelMeta(
            name="cross-encoder",
            version=PLUGIN_VERSION,
            revision=resolved_revision,
            query_modalities=TEXT_ONLY,
            cand_modalities=TEXT_ONLY,
            dim=None,
            prompt_family=None,
            output_args={
                "model": name if not Path(name).expanduser().is_dir() else Path(name).name,
                "max_length": self.model.max_seq_length,
                "dtype": dtype,
            },
        )

    def score(self, queries: Sequence[Item], candidates: Sequence[Item], *, prompts: Sequence[str | None]) -> torch.Tensor:
        """The relevance logit of every (query, candidate) pair, float32 [len(queries)] on the CPU."""
        if not (len(queries) == len(candidates) == len(prompts)):
            raise ValueError("score needs one candidate and one prompt per query")
        if any(prompt is not None for prompt in prompts):
            raise MbenchError("cross-encoder takes no prompt template; the pairs are the raw query and candidate texts")
        check_items(self.meta, queries, "query")
        check_items(self.meta, candidates, "candidate")
        if not queries:
            return torch.empty(0, dtype=torch.float32)
        pairs = [(q.text, c.text) for q, c in zip(queries, candidates)]
        scores = self.model.predict(
            pairs,
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return scores.float().reshape(len(pairs)).cpu()
