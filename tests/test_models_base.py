"""The plugin contract: ModelMeta validation, modality refusal, fingerprints, model kinds, images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    check_items,
    check_modalities,
    directory_digest,
    file_digest,
    load_image,
    model_fingerprint,
    model_kind,
)


def _meta(**overrides) -> ModelMeta:
    fields = dict(
        name="toy",
        version="1",
        revision="abc",
        query_modalities={"text"},
        cand_modalities={"text", "image"},
        dim=8,
        similarity="cosine",
        output_args={"pooling": "mean", "max_len": 128},
    )
    fields.update(overrides)
    return ModelMeta(**fields)


def test_meta_rejects_unknown_modality_and_similarity() -> None:
    with pytest.raises(ValueError, match="modalities"):
        _meta(query_modalities={"audio"})
    with pytest.raises(ValueError, match="modalities"):
        _meta(cand_modalities=set())
    with pytest.raises(ValueError, match="similarity"):
        _meta(similarity="l2")
    assert _meta().query_modalities == frozenset({"text"})


def test_to_dict_is_json_ready_and_carries_the_fingerprint() -> None:
    meta = _meta(output_args={"path": Path("/x"), "k": 1})
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["cand_modalities"] == ["image", "text"]
    assert data["output_args"] == {"k": 1, "path": "/x"}
    assert data["fingerprint"] == model_fingerprint(meta)


def test_check_modalities_refuses_with_a_clear_message() -> None:
    meta = _meta()
    check_modalities(meta, "text", "image", "mbeir.mscoco.t2i")
    with pytest.raises(MbenchError) as err:
        check_modalities(meta, "image,text", "image", "mbeir.cirr.it2i")
    message = str(err.value)
    assert "'toy'" in message and "mbeir.cirr.it2i" in message
    assert "queries are 'image,text'" in message and "{'text'}" in message
    with pytest.raises(MbenchError, match="candidates are 'image,text'"):
        check_modalities(meta, "text", "image,text", "mbeir.edis.t2it")


def test_check_items_names_the_item() -> None:
    meta = _meta()
    check_items(meta, [Item("q1", "hi", None, "text")], "query")
    with pytest.raises(MbenchError, match="'q9'.*'image'"):
        check_items(meta, [Item("q9", None, "x.jpg", "image")], "query")
    with pytest.raises(MbenchError, match="c1.*no image"):
        check_items(meta, [Item("c1", None, None, "image")], "candidate")
    with pytest.raises(MbenchError, match="c2.*no text"):
        check_items(meta, [Item("c2", None, None, "text")], "candidate")


def test_fingerprint_is_stable_and_changes_with_what_changes_outputs() -> None:
    base = _meta()
    assert model_fingerprint(base) == model_fingerprint(_meta(output_args={"max_len": 128, "pooling": "mean"}))
    assert len(model_fingerprint(base)) == 64
    changed = [
        _meta(revision="abd"),
        _meta(version="2"),
        _meta(name="toy2"),
        _meta(output_args={"pooling": "cls", "max_len": 128}),
        _meta(output_args={"pooling": "mean", "max_len": 128, "extra": None}),
    ]
    fingerprints = {model_fingerprint(m) for m in changed}
    assert model_fingerprint(base) not in fingerprints and len(fingerprints) == len(changed)
    # Modalities and prompt family describe the model but do not change its outputs.
    assert model_fingerprint(_meta(prompt_family="llava_p")) == model_fingerprint(base)


class _Dense:
    meta = _meta()

    def encode(self, items, *, role, instructions, prompts):
        raise AssertionError("a protocol double: only its shape is inspected, never called")


class _Lexical:
    meta = _meta(dim=None)

    def index(self, candidates):
        pass

    def search(self, queries, k, *, instructions):
        pass

    def encode(self, items, *, role, instructions, prompts):  # a lexical model that also encodes stays lexical
        pass


class _Rerank:
    meta = _meta(dim=None)

    def score(self, queries, candidates, *, prompts):
        pass


def test_model_kind() -> None:
    assert model_kind(_Dense()) == "retriever"
    assert model_kind(_Lexical()) == "lexical"
    assert model_kind(_Rerank()) == "reranker"
    with pytest.raises(MbenchError, match="no `meta`"):
        model_kind(object())

    class Nothing:
        meta = _meta()

    with pytest.raises(MbenchError, match="none of the plugin protocols"):
        model_kind(Nothing())


def test_load_image_from_path_bytes_and_pil(tmp_path: Path) -> None:
    image = Image.new("L", (4, 3), 128)
    path = tmp_path / "a.png"
    image.save(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    for source in (path, str(path), buffer.getvalue(), image):
        loaded = load_image(Item("i", None, source, "image"))
        assert loaded.mode == "RGB" and loaded.size == (4, 3)
    with pytest.raises(MbenchError, match="'gone'.*not found"):
        load_image(Item("gone", None, tmp_path / "missing.jpg", "image"))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MbenchError, match="'broken'.*cannot be decoded"):
        load_image(Item("broken", None, tmp_path / "broken.jpg", "image"))


def test_directory_digest_follows_file_contents(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "README.md").write_text("docs")
    first = directory_digest(tmp_path)
    assert first.startswith("sha256:")
    (tmp_path / "README.md").write_text("other docs")  # documentation does not pin outputs
    assert directory_digest(tmp_path) == first
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\x00\x02")
    assert directory_digest(tmp_path) != first
    assert file_digest(tmp_path / "config.json") == file_digest(tmp_path / "config.json") != file_digest(tmp_path / "sub" / "weights.bin")
