"""MM-Embed / NV-Embed adapter against tiny local models that carry their own modeling code.

Each model directory holds a ``config.json`` whose ``auto_map`` names classes in a
``modeling_*.py`` beside it, loaded by ``AutoModel.from_pretrained(dir, trust_remote_code=True)``:
the mechanism the real nvidia/MM-Embed and nvidia/NV-Embed-v1 use. The modeling code implements
each model's documented ``encode`` signature, records every call, and returns unnormalised
embeddings like the real models.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.builtin.mm_embed import MMEmbedRetriever

HIDDEN = 8

MODELING = textwrap.dedent(
    '''
    """Tiny stand-ins for MM-Embed's and NV-Embed's remote code: their encode() signatures, toy maths."""

    import numpy as np
    import torch
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel


    class TinyEmbedConfig(PretrainedConfig):
        model_type = "tiny_embed"

        def __init__(self, hidden_size=8, vocab_size=256, **kwargs):
            self.hidden_size = hidden_size
            self.vocab_size = vocab_size
            super().__init__(**kwargs)


    class _Base(PreTrainedModel):
        config_class = TinyEmbedConfig

        def __init__(self, config):
            super().__init__(config)
            self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
            self.pixels = nn.Linear(3, config.hidden_size)
            self.calls = []
            self.post_init()

        def _init_weights(self, module):
            if isinstance(module, (nn.Embedding, nn.Linear)):
                module.weight.data.normal_(0.0, 1.0)

        def text_vector(self, text):
            ids = torch.tensor(list(text.encode("utf-8")) or [0], device=self.device) % self.config.vocab_size
            return self.embed(ids).sum(0)


    class TinyMMEmbedModel(_Base):
        @torch.no_grad()
        def encode(self, inputs, is_query=False, instruction=None, max_length=512, query_prefix="Query: "):
            self.calls.append(
                {"inputs": inputs, "is_query": is_query, "instruction": instruction, "max_length": max_length}
            )
            vectors = []
            for entry in inputs:
                prefix = (f"Instruct: {instruction}\\n" if instruction is not None else "") + query_prefix
                vector = self.text_vector((prefix if is_query else "") + (entry.get("txt") or ""))
                if "img" in entry:
                    mean_rgb = torch.tensor(np.asarray(entry["img"]), dtype=torch.float32).reshape(-1, 3).mean(0) / 255
                    # Like the real models, inputs go to the weights' device and dtype (CUDA, bf16).
                    vector = vector + self.pixels(mean_rgb.to(self.device, self.pixels.weight.dtype))
                vectors.append(vector)
            return {"hidden_states": torch.stack(vectors)}


    class TinyNVEmbedModel(_Base):
        @torch.no_grad()
        def encode(self, prompts, instruction="", max_length=4096, **kwargs):
            self.calls.append({"prompts": prompts, "instruction": instruction, "max_length": max_length})
            return torch.stack([self.text_vector(instruction + prompt) for prompt in prompts])
    '''
)


def _write_remote_code_model(directory: Path, model_class: str) -> Path:
    """Save a tiny model like a hub repository that ships modeling_tiny_embed.py (auto_map in config.json)."""
    import importlib.util

    directory.mkdir(parents=True)
    source = directory / "modeling_tiny_embed.py"
    source.write_text(MODELING)
    spec = importlib.util.spec_from_file_location(f"_tiny_embed_{directory.name}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = getattr(module, model_class)(module.TinyEmbedConfig(hidden_size=HIDDEN))
    model.save_pretrained(directory)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = [model_class]
    config["auto_map"] = {
        "AutoConfig": "modeling_tiny_embed.TinyEmbedConfig",
        "AutoModel": f"modeling_tiny_embed.{model_class}",
    }
    config_path.write_text(json.dumps(config, indent=2))
    return directory


@pytest.fixture(scope="module")
def mm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_remote_code_model(tmp_path_factory.mktemp("remote") / "tiny_mm_embed", "TinyMMEmbedModel")


@pytest.fixture(scope="module")
def nv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_remote_code_model(tmp_path_factory.mktemp("remote") / "tiny_nv_embed", "TinyNVEmbedModel")


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(12, 20, 3), dtype=np.uint8))


COCO = "Retrieve a day-to-day image that aligns with the provided caption."  # M-BEIR MSCOCO task 0, prompt_1
CIRR = "Retrieve a day-to-day image that aligns with the modification instructions of the provided image."
SCIFACT = "Given a scientific claim, retrieve documents that support or refute the claim"  # Table 11


def test_without_the_flag_loading_is_refused(mm_dir):
    with pytest.raises(MbenchError, match=r"ships its own Python code.*--trust-remote-code"):
        MMEmbedRetriever(str(mm_dir))
    with pytest.raises(MbenchError, match="--trust-remote-code"):
        MMEmbedRetriever("nvidia/MM-Embed")  # refused before anything is looked up


def test_registry_requires_the_opt_in_too(mm_dir):
    from mbench.models.registry import build_model

    with pytest.raises(MbenchError, match="--trust-remote-code"):
        build_model("mm-embed", {"name": str(mm_dir)}, device="cpu")
    model = build_model("mm-embed", {"name": str(mm_dir), "trust_remote_code": "true"}, device="cpu")
    assert model.api == "mm-embed"


def test_mm_embed_queries_get_their_instruction_exactly(mm_dir):
    retriever = MMEmbedRetriever(str(mm_dir), trust_remote_code=True, max_length=77)
    assert retriever.api == "mm-embed"
    assert retriever.meta.dim == HIDDEN and retriever.meta.uses_instructions
    assert retriever.meta.query_modalities == frozenset({"text", "image", "image,text"})
    raw_model = retriever.model
    image = _image(0)
    items = [
        Item("q1", "A dog on a sofa.", None, "text"),
        Item("q2", "make it red", image, "image,text"),
        Item("q3", "Two cats.", None, "text"),
    ]
    out = retriever.encode(items, role="query", instructions=[COCO, CIRR, COCO], prompts=[None] * 3)

    # One call per distinct instruction, the instruction passed verbatim, inputs as txt/img dicts.
    calls = raw_model.calls
    assert [(c["instruction"], c["is_query"], c["max_length"]) for c in calls] == [(COCO, True, 77), (CIRR, True, 77)]
    assert [entry["txt"] for entry in calls[0]["inputs"]] == ["A dog on a sofa.", "Two cats."]
    assert calls[1]["inputs"][0]["txt"] == "make it red"
    assert calls[1]["inputs"][0]["img"].tobytes() == image.tobytes()

    # Embeddings are the model's own outputs, rows in item order, L2-normalised.
    raw = torch.cat([
        raw_model.encode([{"txt": "A dog on a sofa."}], is_query=True, instruction=COCO)["hidden_states"],
        raw_model.encode([{"txt": "make it red", "img": image}], is_query=True, instruction=CIRR)["hidden_states"],
        raw_model.encode([{"txt": "Two cats."}], is_query=True, instruction=COCO)["hidden_states"],
    ])
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3))  # the model itself does not normalise
    torch.testing.assert_close(out, torch.nn.functional.normalize(raw, dim=1))


def test_mm_embed_candidates_get_no_instruction(mm_dir):
    retriever = MMEmbedRetriever(str(mm_dir), trust_remote_code=True)
    image = _image(1)
    items = [Item("c1", None, image, "image"), Item("c2", "A passage.", None, "text")]
    out = retriever.encode(items, role="candidate", instructions=[COCO, None], prompts=[None, None])
    (call,) = retriever.model.calls
    assert (call["instruction"], call["is_query"], call["max_length"]) == (None, False, 4096)
    assert list(call["inputs"][0]) == ["img"] and call["inputs"][1] == {"txt": "A passage."}
    raw = retriever.model.encode([{"img": image}, {"txt": "A passage."}])["hidden_states"]
    torch.testing.assert_close(out, torch.nn.functional.normalize(raw, dim=1))


def test_nv_embed_gets_the_card_prefix_and_is_text_only(nv_dir):
    retriever = MMEmbedRetriever(str(nv_dir), trust_remote_code=True)
    assert retriever.api == "nv-embed"
    assert retriever.meta.query_modalities == frozenset({"text"})
    queries = [Item("q1", "Vitamin D cures colds.", None, "text")]
    q = retriever.encode(queries, role="query", instructions=[SCIFACT], prompts=[None])
    c = retriever.encode([Item("d1", "A study.", None, "text")], role="candidate", instructions=[None], prompts=[None])
    query_call, doc_call = retriever.model.calls
    assert query_call["instruction"] == f"Instruct: {SCIFACT}\nQuery: "
    assert query_call["prompts"] == ["Vitamin D cures colds."]
    assert doc_call["instruction"] == ""
    raw = retriever.model.encode(["Vitamin D cures colds."], instruction=f"Instruct: {SCIFACT}\nQuery: ")
    torch.testing.assert_close(q, torch.nn.functional.normalize(raw, dim=1))
    torch.testing.assert_close(c.norm(dim=1), torch.ones(1))
    with pytest.raises(MbenchError, match="modality 'image'"):
        retriever.encode([Item("q2", None, _image(2), "image")], role="query", instructions=[None], prompts=[None])
