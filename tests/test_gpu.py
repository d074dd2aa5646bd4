"""The CUDA path against the fp32 CPU reference: every plugin family, the True/False reranker,
`check-model`, and the embedding store's round trip of bf16 embeddings (`pytest -m gpu`).

Each family encodes the same generated mini items twice through the engine's `encode_rows` (the
code path of `mbench run`): on the CPU in fp32 and on the accelerator as a run does there (bf16
autocast; bf16 weights for the LLaVA-based families). Then every query-candidate score is within
``SCORE_TOL`` of fp32, and the accelerator's exact search (bf16 inputs, fp32 accumulation) ranks
every pool in the fp32 order except for near ties (``NEAR_TIE``); the reranker's P("True") is
within ``PROB_TOL``. The values and why they are what they are: ``accelerator_tolerances``.

BM25 has no device (bm25s ranks on the CPU), so it has no test here.

Skipped without CUDA. ``MBENCH_GPU_TEST_DEVICE=cpu`` runs them with the CPU standing in for the
accelerator: a check of the suite's plumbing on machines without a GPU (the comparisons are then
fp32 against fp32).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import tiny_models
from accelerator_tolerances import NEAR_TIE, PROB_TOL, SCORE_TOL, order_violations
from mbench.data.types import ItemTable
from mbench.tasks.spec import TaskSpec

ACCELERATOR = os.environ.get("MBENCH_GPU_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
ON_CUDA = ACCELERATOR.startswith("cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not ACCELERATOR, reason="needs a CUDA device (or MBENCH_GPU_TEST_DEVICE=cpu for a plumbing run)"),
]

N_QUERIES = 10
N_CANDIDATES = 40
MULTIMODAL_TASKS = ("mini.mbeir.cirr.it2i", "mini.mbeir.mscoco.i2t", "mini.mbeir.visualnews.t2i")
TEXT_TASKS = ("mini.beir.towns",)


@pytest.fixture(scope="module")
def mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory the mini benchmark is generated into once for this module."""
    return tmp_path_factory.mktemp("mini-cache")


@pytest.fixture(scope="module")
def mini(mini_cache: Path) -> dict[str, tuple[TaskSpec, ItemTable, ItemTable]]:
    """The generated mini tasks the families are compared on: (spec, queries, pool) by name.

    The first ``N_QUERIES`` queries and ``N_CANDIDATES`` candidates of each, which keeps the fp32
    CPU reference of eight families short.
    """
    from mbench.data.loader import load_task
    from mbench.tasks import load_task_spec

    out = {}
    for name in MULTIMODAL_TASKS + TEXT_TASKS + ("mini.mbeir.webqa.t2t",):
        spec = load_task_spec(name, [])
        data = load_task(spec, data_dir=None, cache_dir=mini_cache)
        out[name] = (spec, _head(data.queries, N_QUERIES), _head(data.pool, N_CANDIDATES))
    return out


def _head(table: ItemTable, n: int) -> ItemTable:
    return ItemTable(table.ids[:n], table.texts[:n], table.images[:n], table.modalities[:n])


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints of every family, saved like hub models."""
    from test_plugin_mm_embed import _write_remote_code_model

    root = tmp_path_factory.mktemp("models")
    return {
        "st": tiny_models.build_tiny_sentence_transformer(root / "st"),
        "clip": tiny_models.build_tiny_clip(root / "clip"),
        "llava": tiny_models.build_tiny_llava_next(root / "llava"),
        "e5v": tiny_models.build_tiny_llava_next(root / "e5v", chat_format="llama3"),
        "mm-embed": _write_remote_code_model(root / "mm_embed", "TinyMMEmbedModel"),
        "reranker": tiny_models.build_tiny_llava_next(root / "reranker", seed=3),
    }


# family -> (registry name, model args given the model directories, tasks, loads bf16 weights on CUDA)
FAMILIES = {
    "st": ("st", lambda d: {"name": str(d["st"])}, TEXT_TASKS, False),
    "clip-sf": ("clip-sf", lambda d: {"name": str(d["clip"])}, MULTIMODAL_TASKS, False),
    "hash-embed": ("hash-embed", lambda d: {}, MULTIMODAL_TASKS, False),
    "llava-e": ("llava-next", lambda d: {"name": str(d["llava"]), "pooling": "eos"}, MULTIMODAL_TASKS, True),
    "llava-p": ("llava-next", lambda d: {"name": str(d["llava"]), "pooling": "prompt"}, MULTIMODAL_TASKS, True),
    "llava-e-global-image": (
        "llava-next", lambda d: {"name": str(d["llava"]), "global_image_only": "true"}, MULTIMODAL_TASKS, True,
    ),
    "e5v": ("e5v", lambda d: {"name": str(d["e5v"])}, MULTIMODAL_TASKS, True),
    "mm-embed": ("mm-embed", lambda d: {"name": str(d["mm-embed"]), "trust_remote_code": "true"}, MULTIMODAL_TASKS, True),
}


def embed_task(model, spec: TaskSpec, queries: ItemTable, pool: ItemTable, device: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Query and pool embeddings of a task as `mbench run` computes them on ``device`` (fp64 copies)."""
    from mbench.engine.encode import EncodeOptions, encode_rows
    from mbench.engine.pipeline import query_inputs

    instructions, prompt = query_inputs(model.meta, spec, queries.ids, "first", 0)
    options = EncodeOptions(batch_size=8, device=device, progress=False)
    query_vectors = encode_rows(model.encode, queries, np.arange(len(queries)), role="query",
                                instructions=instructions, prompts=[prompt] * len(queries), options=options)
    none = [None] * len(pool)
    pool_vectors = encode_rows(model.encode, pool, np.arange(len(pool)), role="candidate", instructions=none,
                               prompts=none, options=options)
    return _float64(query_vectors), _float64(pool_vectors)


def _float64(vectors) -> np.ndarray:  # type: ignore[no-untyped-def]
    # encode_rows gives float32 numpy, or (once the store keeps the encoder's dtype) a CPU tensor in that dtype.
    return torch.as_tensor(vectors).to(torch.float64).numpy()


def accelerator_search(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """The full ranking of the pool by the engine's exact search on the accelerator (bf16 inputs on CUDA)."""
    from mbench.engine.search import exact_search

    _, indices = exact_search(queries.astype(np.float32), pool.astype(np.float32), len(pool), device=ACCELERATOR,
                              compute_dtype="bf16" if ON_CUDA else None)
    return indices


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_accelerator_ranks_every_pool_like_cpu_fp32(family: str, mini, model_dirs) -> None:  # type: ignore[no-untyped-def]
    from mbench.models.registry import build_model

    name, args, tasks, bf16_weights = FAMILIES[family]
    reference = build_model(name, args(model_dirs), device="cpu")
    model = build_model(name, args(model_dirs), device=ACCELERATOR)
    if ON_CUDA and bf16_weights:
        assert next(model.model.parameters()).dtype == torch.bfloat16
    for task in tasks:
        spec, queries, pool = mini[task]
        q32, p32 = embed_task(reference, spec, queries, pool, "cpu")
        q, p = embed_task(model, spec, queries, pool, ACCELERATOR)
        fp32_scores = q32 @ p32.T
        deviation = float(np.abs(q @ p.T - fp32_scores).max())
        assert deviation <= SCORE_TOL, f"{family} on {task}: a score moved by {deviation:.4f} (tolerance {SCORE_TOL})"
        swaps = order_violations(fp32_scores, accelerator_search(q, p), NEAR_TIE)
        assert not swaps, f"{family} on {task}: (query, rank) out of the fp32 order beyond near ties: {swaps[:10]}"


def test_truefalse_reranker_probability_on_the_accelerator_matches_cpu_fp32(mini, model_dirs) -> None:  # type: ignore[no-untyped-def]
    from mbench.models.registry import build_model

    reference = build_model("llava-next-tf", {"name": str(model_dirs["reranker"])}, device="cpu")
    reranker = build_model("llava-next-tf", {"name": str(model_dirs["reranker"])}, device=ACCELERATOR)
    assert reranker.torch_dtype == (torch.bfloat16 if ON_CUDA else torch.float32)
    # Image pairs (CIRR: candidate image + modification text) and text pairs (WebQA).
    for task in ("mini.mbeir.cirr.it2i", "mini.mbeir.webqa.t2t"):
        spec, queries, pool = mini[task]
        query_items = [queries.item(q) for q in range(4) for _ in range(6)]
        candidate_items = [pool.item(c) for _ in range(4) for c in range(6)]
        prompts = [spec.prompts["truefalse_rerank"]] * len(query_items)
        expected = reference.score(query_items, candidate_items, prompts=prompts)
        got = reranker.score(query_items, candidate_items, prompts=prompts)
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        deviation = float((got - expected).abs().max())
        assert deviation <= PROB_TOL, f"{task}: P(True) moved by {deviation:.4f} (tolerance {PROB_TOL})"


@pytest.mark.parametrize("family", ["llava-next", "clip-sf"])
def test_check_model_passes_on_the_accelerator(family: str, model_dirs, mini_cache: Path,  # type: ignore[no-untyped-def]
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from mbench.cli import main

    directory = model_dirs["llava" if family == "llava-next" else "clip"]
    code = main(["check-model", family, "--model-arg", f"name={directory}", "--device", ACCELERATOR,
                 "--per-modality", "6", "--cache-dir", str(mini_cache)])
    assert code == 0, capsys.readouterr().out


def test_store_round_trips_bf16_embeddings_from_the_accelerator_bit_for_bit(tmp_path: Path) -> None:
    from mbench.engine.search import exact_search
    from mbench.engine.cache.store import EmbeddingStore

    torch.manual_seed(0)
    emitted = torch.nn.functional.normalize(torch.randn(300, 64), dim=1).to(ACCELERATOR, torch.bfloat16)
    # bf16 values float16 cannot hold: two below its subnormal range, and 2^-20 + 2^-27 (float16 keeps 2^-20 only).
    emitted[0, :3] = torch.tensor([1e-30, -3e-9, 2.0**-20 + 2.0**-27], dtype=torch.bfloat16)
    key = hashlib.sha256(b"bf16 round trip").hexdigest()
    store = EmbeddingStore(tmp_path)
    entry = store.entry(key, len(emitted), shard_size=128, meta={"model": "test", "role": "candidate"})
    for shard in range(entry.n_shards):
        rows = entry.shard_range(shard)
        entry.write_shard(shard, emitted[rows.start : rows.stop])

    reopened = store.open(key)
    assert reopened.manifest["dtype"] == "bfloat16"
    loaded = reopened.load()
    expected = emitted.float().cpu().numpy()  # every bf16 value is a float32
    np.testing.assert_array_equal(np.asarray(loaded[:], dtype=np.float32), expected)
    # Search reads the stored rows as they are: the same ranking and scores as from the emitted tensor.
    queries = expected[:7] + 0.5 * expected[7:14]
    compute = "bf16" if ON_CUDA else None
    direct = exact_search(queries, emitted, 20, device=ACCELERATOR, compute_dtype=compute)
    stored = exact_search(queries, loaded, 20, device=ACCELERATOR, compute_dtype=compute)
    np.testing.assert_array_equal(stored[1], direct[1])
    np.testing.assert_array_equal(stored[0], direct[0])
