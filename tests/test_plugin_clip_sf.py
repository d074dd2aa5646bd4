"""CLIP-SF (UniIR score fusion): format_string, instruction composition, fusion, OpenAI-checkpoint loading."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("ftfy")

from PIL import Image  # noqa: E402
from tiny_models import build_tiny_clip  # noqa: E402  (tests/ is on sys.path under pytest)

from mbench.data.types import Item  # noqa: E402
from mbench.errors import MbenchError  # noqa: E402
from mbench.models.text import uniir_format_string, uniir_query_text  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"


# --- UniIR text handling (hand-checked against src/data/preprocessing/utils.py::format_string) ---

@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a dog on the grass\r\n", "A dog on the grass."),
        ('"a quoted caption"', "A quoted caption."),
        ("What is shown?", "What is shown?"),
        ("wow!", "Wow!"),
        ("already ends.", "Already ends."),
        ("'single quotes stay'", "'single quotes stay'."),
        # Whitespace inside the stripped double quotes survives, and " " "capitalises" to itself.
        (' " spaced " ', " spaced ."),
        ("éclair", "Éclair."),
        ("", ""),
        ("  \r ", ""),
        (None, ""),
    ],
)
def test_format_string_matches_uniir(raw, expected):
    assert uniir_format_string(raw) == expected


def test_query_text_composition_matches_uniir():
    # format_string(format_string(instruction) + " " + raw query text)
    assert uniir_query_text("Retrieve an image that matches the caption.", "a dog on grass") == (
        "Retrieve an image that matches the caption. a dog on grass."
    )
    assert uniir_query_text("find the photo", "the cat?") == "Find the photo. the cat?"
    # Image-only query: the instruction alone, its trailing space stripped, is the text.
    assert uniir_query_text("find the photo", None) == "Find the photo."
    assert uniir_query_text(None, "a dog") == "A dog."
    assert uniir_query_text(None, None) == ""


# --- the plugin on a tiny CLIP ---

@pytest.fixture(scope="module")
def tiny_clip_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny CLIPs with different random weights (the second serves as a checkpoint's base)."""
    root = tmp_path_factory.mktemp("clip")
    return build_tiny_clip(root / "a", seed=0), build_tiny_clip(root / "b", seed=1)


@pytest.fixture(scope="module")
def reference(tiny_clip_dirs):
    """The tiny model loaded straight from transformers, to compute expected features by hand."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(tiny_clip_dirs[0])).eval()
    return model, CLIPProcessor.from_pretrained(str(tiny_clip_dirs[0]))


@pytest.fixture(scope="module")
def plugin(tiny_clip_dirs):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    return CLIPScoreFusion(name=str(tiny_clip_dirs[0]))


def _image(color: tuple[int, int, int], size=(40, 48)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.putpixel((3, 5), (255, 255, 255))
    return image


def _text_features(reference, text: str) -> torch.Tensor:
    model, processor = reference
    batch = processor.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**batch)
    return (out if isinstance(out, torch.Tensor) else out.pooler_output)[0]


def _image_features(reference, image: Image.Image) -> torch.Tensor:
    model, processor = reference
    pixels = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model.get_image_features(pixel_values=pixels)
    return (out if isinstance(out, torch.Tensor) else out.pooler_output)[0]


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm()


def test_meta(plugin):
    meta = plugin.meta
    assert meta.name == "clip-sf" and meta.dim == 16 and meta.similarity == "cosine"
    assert meta.uses_instructions and meta.prompt_family is None
    assert meta.query_modalities == meta.cand_modalities == {"text", "image", "image,text"}
    assert meta.revision.startswith("sha256:")


def test_fused_is_normalised_sum_of_unnormalised_text_and_image_features(plugin, reference):
    red, blue = _image((200, 30, 30)), _image((20, 40, 220), size=(64, 32))
    items = [
        Item("c1", "a photo of the dog", None, "text"),
        Item("c2", None, red, "image"),
        Item("c3", "the cat", blue, "image,text"),
    ]
    got = plugin.encode(items, role="candidate", instructions=[None] * 3, prompts=[None] * 3)
    text_dog = _text_features(reference, "A photo of the dog.")
    image_red = _image_features(reference, red)
    fused = _text_features(reference, "The cat.") + _image_features(reference, blue)
    expected = torch.stack([_unit(text_dog), _unit(image_red), _unit(fused)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The sum is taken before normalising: not the sum of unit vectors.
    assert not torch.allclose(
        got[2], _unit(_unit(_text_features(reference, "The cat.")) + _unit(_image_features(reference, blue))), atol=1e-3
    )


def test_query_instruction_is_prepended_as_uniir_does(plugin, reference):
    instruction = "retrieve an image that matches the caption"
    picture = _image((10, 200, 10))
    queries = [Item("q1", "a dog", None, "text"), Item("q2", None, picture, "image")]
    assert plugin.texts_for(queries, "query", [instruction, instruction]) == [
        "Retrieve an image that matches the caption. a dog.",
        "Retrieve an image that matches the caption.",
    ]
    got = plugin.encode(queries, role="query", instructions=[instruction] * 2, prompts=[None] * 2)
    expected_text = _unit(_text_features(reference, "Retrieve an image that matches the caption. a dog."))
    # An image-only query with an instruction fuses the instruction's text features, as in UniIR.
    expected_image = _unit(
        _text_features(reference, "Retrieve an image that matches the caption.") + _image_features(reference, picture)
    )
    torch.testing.assert_close(got, torch.stack([expected_text, expected_image]), atol=1e-5, rtol=1e-5)
    # Candidates never get the instruction.
    assert plugin.texts_for(queries[:1], "candidate", [instruction]) == ["A dog."]


def test_batch_composition_does_not_change_embeddings(plugin):
    items = [
        Item("a", "a much longer caption about the dog and the cat " * 3, None, "text"),
        Item("b", "dog", _image((1, 2, 3)), "image,text"),
        Item("c", None, _image((90, 90, 9)), "image"),
    ]
    batch = plugin.encode(items, role="candidate", instructions=[None] * 3, prompts=[None] * 3)
    single = torch.cat([plugin.encode([i], role="candidate", instructions=[None], prompts=[None]) for i in items])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_long_text_is_truncated_to_77_tokens_keeping_end_of_text(plugin, reference):
    long_text = "the dog " * 100
    batch = plugin.tokenizer([long_text], truncation=True, max_length=77)
    ids = batch["input_ids"][0]
    assert len(ids) == 77 and ids[-1] == plugin.tokenizer.eos_token_id and ids[0] == plugin.tokenizer.bos_token_id
    got = plugin.encode([Item("t", long_text, None, "text")], role="candidate", instructions=[None], prompts=[None])
    model, _ = reference
    with torch.no_grad():
        out = model.get_text_features(input_ids=torch.tensor([ids]))
    expected = out if isinstance(out, torch.Tensor) else out.pooler_output
    torch.testing.assert_close(got, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5, rtol=1e-5)


def test_openai_text_cleaning_unescapes_html(plugin):
    same = plugin.encode(
        [Item("x", "the dog &amp; the cat", None, "text"), Item("y", "the dog & the cat", None, "text")],
        role="candidate",
        instructions=[None, None],
        prompts=[None, None],
    )
    torch.testing.assert_close(same[0], same[1])


# --- UniIR checkpoints in OpenAI naming ---

def to_openai_state_dict(model) -> dict[str, torch.Tensor]:
    """The inverse of the plugin's mapping, written out independently: transformers CLIPModel -> OpenAI CLIP names."""
    hf = model.state_dict()
    out = {
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
        "visual.proj": hf["visual_projection.weight"].T.contiguous(),
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        "text_projection": hf["text_projection.weight"].T.contiguous(),
        "logit_scale": hf["logit_scale"],
    }
    for openai_tower, hf_tower, config in (
        ("visual.transformer", "vision_model", model.config.vision_config),
        ("transformer", "text_model", model.config.text_config),
    ):
        for n in range(config.num_hidden_layers):
            src, dst = f"{hf_tower}.encoder.layers.{n}.", f"{openai_tower}.resblocks.{n}."
            for kind in ("weight", "bias"):
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
                )
                out[f"{dst}attn.out_proj.{kind}"] = hf[f"{src}self_attn.out_proj.{kind}"]
                out[f"{dst}ln_1.{kind}"] = hf[f"{src}layer_norm1.{kind}"]
                out[f"{dst}ln_2.{kind}"] = hf[f"{src}layer_norm2.{kind}"]
                out[f"{dst}mlp.c_fc.{kind}"] = hf[f"{src}mlp.fc1.{kind}"]
                out[f"{dst}mlp.c_proj.{kind}"] = hf[f"{src}mlp.fc2.{kind}"]
    return {key: value.clone() for key, value in out.items()}


def _save_uniir_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    # UniIR saves {"model": CLIPScoreFusion.state_dict()}: OpenAI names under "clip_model.".
    torch.save({"model": {f"clip_model.{k}": v for k, v in state.items()}, "epoch": 19}, path)
    return path


def test_checkpoint_in_openai_names_reproduces_the_original_model(tiny_clip_dirs, reference, plugin, tmp_path):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    model, _ = reference
    path = _save_uniir_checkpoint(to_openai_state_dict(model), tmp_path / "clip_sf_tiny.pth")
    # Loaded on top of a *different* random CLIP: every weight must come from the checkpoint.
    loaded = CLIPScoreFusion(name=str(tiny_clip_dirs[1]), checkpoint=path)
    base = CLIPScoreFusion(name=str(tiny_clip_dirs[1]))
    items = [Item("t", "the dog", None, "text"), Item("i", None, _image((5, 100, 200)), "image"),
             Item("m", "the cat", _image((250, 5, 5)), "image,text")]
    args = {"role": "candidate", "instructions": [None] * 3, "prompts": [None] * 3}
    torch.testing.assert_close(loaded.encode(items, **args), plugin.encode(items, **args), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(base.encode(items, **args), plugin.encode(items, **args), atol=1e-2)
    assert loaded.meta.revision == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.meta.revision != base.meta.revision


def test_checkpoint_with_unknown_or_missing_keys_is_refused_with_a_list(reference, tiny_clip_dirs, tmp_path):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    state = to_openai_state_dict(reference[0])
    del state["ln_final.bias"]
    del state["visual.transformer.resblocks.1.mlp.c_fc.weight"]
    state["visual.extra_head.weight"] = torch.zeros(2)
    path = _save_uniir_checkpoint(state, tmp_path / "bad.pth")
    with pytest.raises(MbenchError) as err:
        CLIPScoreFusion(name=str(tiny_clip_dirs[0]), checkpoint=path)
    message = str(err.value)
    assert "unknown keys (1): visual.extra_head.weight" in message
    assert "missing keys (2)" in message
    assert "text_model.final_layer_norm.bias" in message
    assert "vision_model.encoder.layers.1.mlp.fc1.weight" in message


def test_checkpoint_of_another_size_is_refused(reference, tiny_clip_dirs, tmp_path):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    state = to_openai_state_dict(reference[0])
    state["text_projection"] = torch.zeros(32, 8)
    path = _save_uniir_checkpoint(state, tmp_path / "other.pth")
    with pytest.raises(MbenchError, match=r"shape mismatches \(1\): text_projection.weight"):
        CLIPScoreFusion(name=str(tiny_clip_dirs[0]), checkpoint=path)


def test_checkpoint_with_pickled_objects_is_refused(tiny_clip_dirs, tmp_path):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    path = tmp_path / "pickled.pth"
    torch.save({"model": {}, "config": Path("x")}, path)  # any non-tensor object weights_only refuses
    with pytest.raises(MbenchError, match="tensors only"):
        CLIPScoreFusion(name=str(tiny_clip_dirs[0]), checkpoint=path)


def test_uncached_hub_id_says_how_to_fetch(monkeypatch, tmp_path):
    from mbench.models.builtin.clip_sf import CLIPScoreFusion

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MbenchError, match=r"hf download mbench-test/no-such-clip.*--model-arg name="):
        CLIPScoreFusion(name="mbench-test/no-such-clip")
