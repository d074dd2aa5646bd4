"""Exact search: brute-force equality with the tie rule, padding, exclusion, tiling, backends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mbench.engine.cache.store import RowConcat
from mbench.engine.search import (
    _pack,
    _unpack_scores,
    exact_search,
    faiss_search,
    search,
    tile_bounds,
)
from mbench.errors import MbenchError


def brute_force(q: np.ndarray, p: np.ndarray, k: int, tie_rank: np.ndarray | None = None, exclude=None):  # type: ignore[no-untyped-def]
    """numpy reference: score desc, then tie rank desc (default: smaller index first); -1/-inf padding."""
    scores = q.astype(np.float64) @ p.astype(np.float64).T
    n = p.shape[0]
    ranks = np.arange(n)[::-1] if tie_rank is None else np.asarray(tie_rank)
    out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    for row in range(q.shape[0]):
        cand = np.arange(n)
        if exclude is not None and exclude[row] >= 0:
            cand = cand[cand != exclude[row]]
        order = cand[np.lexsort((-ranks[cand], -scores[row, cand]))][:k]
        out_i[row, : len(order)] = order
        out_s[row, : len(order)] = scores[row, order]
    return out_s, out_i


def integer_case(seed: int, nq: int = 9, n: int = 50, d: int = 3):  # type: ignore[no-untyped-def]
    # Entries in {-1, 0, 1}: dot products are small integers, so most scores tie.
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, (nq, d)).astype(np.float32)
    p = rng.integers(-1, 2, (n, d)).astype(np.float32)
    return q, p, rng.permutation(n)


def test_hand_checked_tie_order_follows_tie_rank_descending() -> None:
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    p = np.array([[1, 0], [0, 1], [1, 5], [2, 0], [1, -3]], dtype=np.float32)  # scores 1, 0, 1, 2, 1
    tie_rank = np.array([0, 1, 4, 2, 3])  # among score 1: candidate 2 (rank 4), 4 (rank 3), 0 (rank 0)
    scores, indices = exact_search(q, p, 4, tie_rank=tie_rank)
    assert indices.tolist() == [[3, 2, 4, 0]]
    assert scores.tolist() == [[2.0, 1.0, 1.0, 1.0]]
    assert scores.dtype == np.float32 and indices.dtype == np.int64


def test_default_tie_order_is_smaller_index_first() -> None:
    q = np.ones((1, 2), dtype=np.float32)
    p = np.ones((4, 2), dtype=np.float32)
    assert exact_search(q, p, 3)[1].tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("seed", range(6))
def test_many_ties_equal_brute_force_with_tie_rule(seed: int) -> None:
    q, p, tie_rank = integer_case(seed)
    for k in (1, 5, 20):
        ref_s, ref_i = brute_force(q, p, k, tie_rank)
        scores, indices = exact_search(q, p, k, tie_rank=tie_rank)
        np.testing.assert_array_equal(indices, ref_i)
        np.testing.assert_array_equal(scores, ref_s)


def test_ties_across_the_top_k_boundary_are_decided_by_tie_rank() -> None:
    # 40 candidates share the best score, so the 10 kept are decided by tie rank alone.
    q = np.ones((2, 2), dtype=np.float32)
    p = np.vstack([np.ones((40, 2)), np.zeros((5, 2))]).astype(np.float32)
    tie_rank = np.random.default_rng(1).permutation(45)
    ref_s, ref_i = brute_force(q, p, 10, tie_rank)
    for tile in (1, 7, 64):
        scores, indices = exact_search(q, p, 10, tie_rank=tie_rank, pool_tile=tile)
        np.testing.assert_array_equal(indices, ref_i)
        np.testing.assert_array_equal(scores, ref_s)


def test_k_larger_than_the_pool_pads_with_minus_one_and_minus_inf() -> None:
    q, p, tie_rank = integer_case(3, n=6)
    scores, indices = exact_search(q, p, 10, tie_rank=tie_rank)
    ref_s, ref_i = brute_force(q, p, 10, tie_rank)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_array_equal(scores, ref_s)
    assert (indices[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all()


def test_exclude_drops_one_candidate_and_still_returns_k() -> None:
    q, p, tie_rank = integer_case(4)
    exclude = np.array([0, -1, 49, 7, 7, 3, -1, 20, 11])
    ref_s, ref_i = brute_force(q, p, 10, tie_rank, exclude)
    scores, indices = exact_search(q, p, 10, tie_rank=tie_rank, exclude=exclude, pool_tile=7)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_array_equal(scores, ref_s)
    assert all(exclude[r] not in indices[r] for r in range(len(exclude)))
    assert (indices >= 0).all()


def test_exclude_with_a_pool_of_exactly_k_leaves_one_padding_slot() -> None:
    q = np.ones((1, 2), dtype=np.float32)
    p = np.arange(6, dtype=np.float32).reshape(3, 2)
    scores, indices = exact_search(q, p, 3, exclude=np.array([2]))
    assert indices.tolist() == [[1, 0, -1]] and scores[0, :2].tolist() == [5.0, 1.0] and np.isneginf(scores[0, 2])


@pytest.mark.parametrize("group", [1, 3, 32, 500])
def test_many_ties_over_many_tiles_equal_brute_force_for_every_pruning_group(group: int) -> None:
    # 3,000 candidates with scores in -4..4: ties at every top-k boundary, in every tile.
    q, p, tie_rank = integer_case(9, nq=20, n=3000, d=4)
    exclude = np.random.default_rng(2).integers(-1, 3000, 20)
    ref_s, ref_i = brute_force(q, p, 100, tie_rank, exclude)
    for tile in (97, 1024, 3000):
        scores, indices = exact_search(q, p, 100, tie_rank=tie_rank, exclude=exclude, pool_tile=tile, query_batch=7, group=group)
        np.testing.assert_array_equal(indices, ref_i)
        np.testing.assert_array_equal(scores, ref_s)


def test_real_valued_search_equals_fp64_brute_force() -> None:
    # Random unit vectors (tie-free): the pruned search must find exactly the best 50 of 20,000.
    rng = np.random.default_rng(5)
    q = rng.standard_normal((30, 64)).astype(np.float32)
    p = rng.standard_normal((20000, 64)).astype(np.float32)
    ref_s, ref_i = brute_force(q, p, 50)
    scores, indices = exact_search(q, p, 50, pool_tile=4096)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_allclose(scores, ref_s, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_batch_and_tile_sizes_1_7_64_give_identical_results(seed: int) -> None:
    q, p, tie_rank = integer_case(seed, nq=12, n=70)
    results = [
        exact_search(q, p, 12, tie_rank=tie_rank, query_batch=b, pool_tile=t)
        for b in (1, 7, 64)
        for t in (1, 7, 64)
    ]
    for scores, indices in results[1:]:
        np.testing.assert_array_equal(indices, results[0][1])
        np.testing.assert_array_equal(scores, results[0][0])


def test_tile_sizes_do_not_change_d768_float_scores_on_cpu() -> None:
    # The embedding width of the real models: identical bits from one big tile down to tiny ones.
    rng = np.random.default_rng(3)
    q = rng.standard_normal((70, 768)).astype(np.float32)
    p = rng.standard_normal((1500, 768)).astype(np.float32)
    ref = exact_search(q, p, 40, query_batch=70, pool_tile=1500)
    for b, t, g in ((35, 97, 1), (1, 1500, 32), (64, 1000, 4), (33, 333, 1000)):
        scores, indices = exact_search(q, p, 40, query_batch=b, pool_tile=t, group=g)
        np.testing.assert_array_equal(indices, ref[1])
        np.testing.assert_array_equal(scores, ref[0])


def test_batch_and_tile_sizes_do_not_change_float_scores_on_cpu() -> None:
    # Real-valued vectors: identical bits, thanks to the minimum GEMM size on CPU.
    rng = np.random.default_rng(7)
    q = rng.standard_normal((5, 96)).astype(np.float32)
    p = rng.standard_normal((40, 96)).astype(np.float32)
    ref = exact_search(q, p, 20, query_batch=64, pool_tile=64)
    for b, t in ((1, 1), (7, 7), (1, 40), (5, 1)):
        scores, indices = exact_search(q, p, 20, query_batch=b, pool_tile=t)
        np.testing.assert_array_equal(indices, ref[1])
        np.testing.assert_array_equal(scores, ref[0])


def test_pool_as_row_concat_of_memmaps_equals_the_plain_array(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q, p, tie_rank = integer_case(5, n=40)
    cuts = [0, 13, 14, 33, 40]
    parts = []
    for j, (a, b) in enumerate(itertools.pairwise(cuts)):
        np.save(tmp_path / f"{j}.npy", p[a:b].astype(np.float16))
        parts.append(np.load(tmp_path / f"{j}.npy", mmap_mode="r"))
    view = RowConcat(parts)
    plain = exact_search(q, p, 15, tie_rank=tie_rank)
    streamed = exact_search(q, view, 15, tie_rank=tie_rank, pool_tile=6)
    np.testing.assert_array_equal(streamed[1], plain[1])
    np.testing.assert_array_equal(streamed[0], plain[0])


def test_tiles_of_a_row_concat_never_straddle_its_parts() -> None:
    view = RowConcat([np.zeros((5, 2), np.float32), np.zeros((3, 2), np.float32), np.zeros((4, 2), np.float32)])
    assert tile_bounds(view, 4) == [(0, 4), (4, 5), (5, 8), (8, 12)]
    assert tile_bounds(view, 4, within_parts=False) == [(0, 4), (4, 8), (8, 12)]  # copied tiles (GPU, faiss)
    assert tile_bounds(np.zeros((12, 2), np.float32), 5) == [(0, 5), (5, 10), (10, 12)]


def test_fp16_and_bf16_pools_are_searched_in_fp32_as_their_exact_upcast() -> None:
    rng = np.random.default_rng(4)
    q = rng.standard_normal((9, 48)).astype(np.float32)
    p32 = rng.standard_normal((700, 48)).astype(np.float32)
    p16 = p32.astype(np.float16)
    pbf = torch.from_numpy(p32).to(torch.bfloat16)
    bits = pbf.view(torch.int16).numpy().view(np.uint16)  # bf16 as the store keeps it: raw 16-bit patterns
    for pool, upcast, options in (
        (p16, p16.astype(np.float32), {}),
        (pbf, pbf.float().numpy(), {}),
        (bits, pbf.float().numpy(), {"bf16_bits": True}),
    ):
        ref = exact_search(q, upcast, 25, pool_tile=128)
        got = exact_search(q, pool, 25, pool_tile=128, **options)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])


def test_bf16_bit_patterns_as_queries_are_read_as_bf16() -> None:
    q = torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16)
    p = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    scores, indices = exact_search(q.view(torch.int16).numpy().view(np.uint16), p, 3, bf16_bits=True)
    assert indices.tolist() == [[2, 1, 0]] and scores.tolist() == [[3.0, 2.0, 1.0]]


def test_uint16_pool_without_bf16_bits_is_an_error() -> None:
    with pytest.raises(MbenchError, match="bf16_bits"):
        exact_search(np.ones((1, 2), np.float32), np.ones((3, 2), np.uint16), 2)


def test_nan_in_the_pool_is_an_error_naming_the_row() -> None:
    p = np.ones((300, 4), dtype=np.float32)
    p[211, 2] = np.nan
    with pytest.raises(MbenchError, match="pool embedding row 211"):
        exact_search(np.ones((2, 4), np.float32), p, 5, pool_tile=100)


def test_progress_prints_plain_tile_lines_when_stderr_is_not_a_terminal(capsys) -> None:  # type: ignore[no-untyped-def]
    q, p, _ = integer_case(1, n=50)
    exact_search(q, p, 5, pool_tile=20, progress=True)
    err = capsys.readouterr().err
    assert "search: 3/3 tiles" in err and "cand/s" in err


def test_no_progress_prints_nothing(capsys) -> None:  # type: ignore[no-untyped-def]
    q, p, _ = integer_case(1, n=50)
    exact_search(q, p, 5, pool_tile=20)
    assert capsys.readouterr().err == ""


def test_faiss_backend_equals_torch_backend_on_tie_free_data() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(11)
    q = rng.standard_normal((25, 32)).astype(np.float32)
    p = rng.standard_normal((500, 32)).astype(np.float32)
    exclude = rng.integers(-1, 500, 25)
    torch_s, torch_i = exact_search(q, p, 30, exclude=exclude)
    faiss_s, faiss_i = faiss_search(q, p, 30, exclude=exclude, pool_tile=128)
    np.testing.assert_array_equal(faiss_i, torch_i)
    np.testing.assert_allclose(faiss_s, torch_s, rtol=0, atol=1e-5)


def test_faiss_backend_resolves_ties_with_the_tie_rule() -> None:
    pytest.importorskip("faiss")
    q, p, tie_rank = integer_case(2)
    ref_s, ref_i = brute_force(q, p, 10, tie_rank)
    scores, indices = search(q, p, 10, backend="faiss", tie_rank=tie_rank, margin=1)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_array_equal(scores, ref_s)


def test_nan_query_is_an_error_naming_the_row() -> None:
    q = np.ones((3, 2), dtype=np.float32)
    q[1, 0] = np.nan
    with pytest.raises(MbenchError, match="query embedding row 1"):
        exact_search(q, np.ones((4, 2), np.float32), 2)


def test_tie_rank_must_be_a_permutation() -> None:
    with pytest.raises(ValueError, match="permutation"):
        exact_search(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 2, tie_rank=np.array([0, 0, 1]))


def test_half_compute_on_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="fp32"):
        exact_search(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 2, compute_dtype="bf16")


def test_sort_key_round_trips_scores_and_orders_them() -> None:
    scores = torch.tensor([[-float("inf"), -2.5, -0.0, 0.0, 1e-30, 3.0, float("inf")]])
    keys = _pack(scores, torch.zeros_like(scores, dtype=torch.int64))
    assert torch.equal(_unpack_scores(keys), scores + 0.0)
    assert bool((keys[0, 1:] >= keys[0, :-1]).all()) and keys[0, 2] == keys[0, 3]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_search_matches_cpu_on_integer_data() -> None:
    q, p, tie_rank = integer_case(8, nq=30, n=400, d=8)
    cpu = exact_search(q, p, 25, tie_rank=tie_rank)
    for dtype in ("fp16", "bf16"):
        gpu = exact_search(q, p.astype(np.float16), 25, tie_rank=tie_rank, device="cuda", compute_dtype=dtype, pool_tile=64)
        np.testing.assert_array_equal(gpu[1], cpu[1])
        np.testing.assert_array_equal(gpu[0], cpu[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_search_equals_cpu_fp32_search_of_the_same_bf16_vectors_up_to_near_ties() -> None:
    # Both accumulate the same bf16 products in fp32; only the summation order differs (ulps).
    gen = torch.Generator().manual_seed(6)
    q = torch.nn.functional.normalize(torch.randn(300, 256, generator=gen), dim=1).to(torch.bfloat16)
    p = torch.nn.functional.normalize(torch.randn(40000, 256, generator=gen), dim=1).to(torch.bfloat16)
    cpu_s, cpu_i = exact_search(q, p, 100)
    gpu_s, gpu_i = exact_search(q.cuda(), p.cuda(), 100, device="cuda", pool_tile=8192, query_batch=128)
    np.testing.assert_allclose(gpu_s, cpu_s, rtol=0, atol=1e-5)
    exact = (q.double() @ p.double().T).numpy()
    for row in np.flatnonzero((gpu_i != cpu_i).any(axis=1)):
        diff = gpu_i[row] != cpu_i[row]
        np.testing.assert_allclose(exact[row, gpu_i[row][diff]], exact[row, cpu_i[row][diff]], rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_search_streams_a_memory_mapped_bf16_pool_like_a_resident_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(7)
    q = torch.nn.functional.normalize(torch.randn(50, 64, generator=gen), dim=1).to(torch.bfloat16)
    p = torch.nn.functional.normalize(torch.randn(9000, 64, generator=gen), dim=1).to(torch.bfloat16)
    parts = []
    for j, (a, b) in enumerate(((0, 4096), (4096, 9000))):  # part edges on tile edges: the same GEMM shapes
        np.save(tmp_path / f"{j}.npy", p[a:b].view(torch.int16).numpy().view(np.uint16))
        parts.append(np.load(tmp_path / f"{j}.npy", mmap_mode="r"))
    resident = exact_search(q.cuda(), p.cuda(), 30, device="cuda", pool_tile=1024)
    streamed = exact_search(q.cuda(), RowConcat(parts), 30, device="cuda", pool_tile=1024, bf16_bits=True)
    np.testing.assert_array_equal(streamed[1], resident[1])
    np.testing.assert_array_equal(streamed[0], resident[0])
