"""hash-embed: the deterministic test plugin every engine test leans on."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import model_fingerprint
from mbench.models.builtin.hashing import HashingRetriever
from mbench.models.registry import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def _encode(model, items, role="query", instructions=None, prompts=None):
    n = len(items)
    return model.encode(items, role=role, instructions=instructions or [None] * n, prompts=prompts or [None] * n)


def _image(colour, size=(24, 24)) -> Image.Image:
    image = Image.new("RGB", size, colour)
    image.paste((255 - colour[0], colour[1], 0), (0, 0, size[0] // 2, size[1] // 2))
    return image


def test_text_embeddings_are_unit_deterministic_and_similarity_aware() -> None:
    model = HashingRetriever(dim=128)
    items = [
        Item("a", "red ball on the beach", None, "text"),
        Item("b", "a red ball on a beach", None, "text"),
        Item("c", "quantum chromodynamics lecture", None, "text"),
    ]
    out = _encode(model, items)
    assert out.shape == (3, 128) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(3))
    assert float(out[0] @ out[1]) > float(out[0] @ out[2]) + 0.3
    again = HashingRetriever(dim=128)
    assert torch.equal(_encode(again, items[::-1]), out.flip(0))
    assert torch.equal(torch.cat([_encode(model, items[i : i + 1]) for i in range(3)]), out)


def test_embeddings_do_not_depend_on_the_process_hash_seed() -> None:
    code = (
        "from mbench.models.builtin.hashing import HashingRetriever\n"
        "from mbench.data.types import Item\n"
        "m = HashingRetriever(dim=64)\n"
        "v = m.encode([Item('a', 'stable hashing', None, 'text')], role='query', instructions=[None], prompts=[None])\n"
        "print(repr(v[0, :8].tolist()))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_images_from_any_source_and_combined_items(tmp_path: Path) -> None:
    model = HashingRetriever(dim=64, image_size=8)
    red, blue = _image((200, 20, 20)), _image((20, 20, 200))
    path = tmp_path / "red.png"
    red.save(path)
    buffer = io.BytesIO()
    red.save(buffer, format="PNG")
    items = [
        Item("p", None, path, "image"),
        Item("b", None, buffer.getvalue(), "image"),
        Item("i", None, red, "image"),
        Item("blue", None, blue, "image"),
        Item("it", "a red square", red, "image,text"),
        Item("t", "a red square", None, "text"),
    ]
    out = _encode(model, items, role="candidate")
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[0], out[2])
    assert float(out[0] @ out[3]) < 0.99
    # image,text = normalised sum of the image and text parts: close to both, equal to neither.
    expected = torch.nn.functional.normalize(out[2] + out[5], dim=0)
    assert torch.allclose(out[4], expected, atol=1e-6)


def test_instructions_and_prompts_change_queries_only_when_used() -> None:
    item = [Item("q", "find the red ball", None, "text")]
    model = HashingRetriever()
    plain = _encode(model, item)
    instructed = _encode(model, item, instructions=["Retrieve an image."])
    prompted = _encode(model, item, prompts=["<qtxt> in one word:"])
    assert not torch.allclose(plain, instructed) and not torch.allclose(plain, prompted)
    blind = HashingRetriever(uses_instructions=False)
    assert blind.meta.uses_instructions is False
    assert torch.equal(_encode(blind, item, instructions=["Retrieve an image."]), _encode(blind, item))


def test_nan_ids_counters_and_call_log(tmp_path: Path) -> None:
    log = tmp_path / "calls.tsv"
    model = build_model("hash-embed", {"nan_ids": "bad,worse", "call_log": str(log)})
    items = [Item("ok", "fine", None, "text"), Item("bad", "broken", None, "text")]
    out = _encode(model, items, role="candidate")
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()
    _encode(model, items[:1])
    assert model.encode_calls == 2 and model.items_encoded == 3
    lines = [line.split("\t") for line in log.read_text().splitlines()]
    assert [(role, item_id) for _, role, item_id in lines] == [("candidate", "ok"), ("candidate", "bad"), ("query", "ok")]
    assert model_fingerprint(model.meta) != model_fingerprint(build_model("hash-embed", {}).meta)
    # Test hooks that leave outputs alone do not move the fingerprint.
    assert model_fingerprint(build_model("hash-embed", {"call_log": str(log), "delay": "0.01"}).meta) == model_fingerprint(
        build_model("hash-embed", {}).meta
    )


def test_restricted_modalities_are_declared_and_refused() -> None:
    model = build_model("hash-embed", {"query_modalities": "text", "cand_modalities": "image|image,text"})
    assert model.meta.query_modalities == {"text"} and model.meta.cand_modalities == {"image", "image,text"}
    with pytest.raises(MbenchError, match="cannot encode query 'q'.*'image'"):
        _encode(model, [Item("q", None, _image((1, 2, 3)), "image")])
    with pytest.raises(MbenchError, match="expected '\\|'-separated modalities"):
        build_model("hash-embed", {"query_modalities": "audio"})


def test_one_instruction_per_item_is_required() -> None:
    with pytest.raises(ValueError, match="one instruction and one prompt per item"):
        HashingRetriever().encode([Item("a", "x", None, "text")], role="query", instructions=[], prompts=[None])


def test_empty_batch_and_bfloat16() -> None:
    assert _encode(HashingRetriever(dim=16), []).shape == (0, 16)
    model = HashingRetriever(dim=16, dtype="bfloat16")
    out = _encode(model, [Item("i", None, _image((10, 200, 10)), "image")], role="candidate")
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
