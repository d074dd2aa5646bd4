"""The speed benchmarks' protocol (load check, alternating order) and their tiny CPU runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_protocol  # noqa: E402
from bench_protocol import LoadRecord, alternating_orders, write_refusal  # noqa: E402


def test_methods_alternate_order_over_repeats() -> None:
    assert alternating_orders(["A", "B"], 3) == [["A", "B"], ["B", "A"], ["A", "B"]]


def test_a_load_above_the_core_count_before_the_run_is_noisy() -> None:
    assert LoadRecord(cores=2, before=(2.5, 0, 0), after=(1.0, 0, 0), others_share=0.0).noisy


def test_other_processes_using_over_a_tenth_of_the_cpu_during_the_run_is_noisy() -> None:
    assert LoadRecord(cores=2, before=(0.3, 0, 0), after=(2.6, 0, 0), others_share=0.15).noisy
    # The bench's own threads lift the load average to the core count: that alone is not noise.
    assert not LoadRecord(cores=2, before=(0.3, 0, 0), after=(2.1, 0, 0), others_share=0.02).noisy


def test_without_cpu_accounting_the_load_after_the_run_decides() -> None:
    assert LoadRecord(cores=2, before=(0.3, 0, 0), after=(2.1, 0, 0)).noisy
    assert not LoadRecord(cores=2, before=(0.3, 0, 0), after=(1.9, 0, 0)).noisy


def test_a_run_measures_the_cpu_share_of_other_processes() -> None:
    load = LoadRecord()
    sum(i * i for i in range(200_000))
    load.stop()
    assert load.after is not None and load.others_share is not None and 0.0 <= load.others_share <= 1.0


def test_a_noisy_run_refuses_to_write_unless_allowed() -> None:
    noisy = LoadRecord(cores=2, before=(4.0, 0, 0), after=(4.0, 0, 0))
    assert "--allow-noisy" in write_refusal(noisy, allow_noisy=False)
    assert write_refusal(noisy, allow_noisy=True) is None
    assert write_refusal(LoadRecord(cores=2, before=(0.5, 0, 0), after=(0.5, 0, 0)), allow_noisy=False) is None


def test_search_bench_refuses_a_noisy_write_and_marks_an_allowed_one(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    import search_bench

    monkeypatch.setattr(bench_protocol, "load_average", lambda: (99.0, 99.0, 99.0))
    out = tmp_path / "search.md"
    tiny = ["--queries", "20", "--pool", "3000", "--dim", "16", "--k", "10", "--repeats", "2", "--skip-mteb", "--write", str(out)]
    assert search_bench.main(tiny) == 3
    assert not out.exists()
    assert search_bench.main([*tiny, "--allow-noisy"]) == 0
    text = out.read_text()
    assert "NOISY" in text and "recorded with --allow-noisy" in text and "| GEMM floor |" in text


def test_gpu_search_bench_runs_on_cpu_and_agrees_with_the_fp32_reference(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    import gpu_search_bench

    out = tmp_path / "gpu-search.md"
    argv = ["--device", "cpu", "--pool-size", "3000", "--queries", "32", "--dims", "32", "--check-queries", "8",
            "--k", "20", "--out", str(out)]
    assert gpu_search_bench.main(argv) == 0  # non-zero when a sampled query disagrees beyond near-ties
    text = out.read_text()
    assert "| 32 | 32 | 32 x 3,000 |" in text and "(*extrapolated*)" in text  # 32 of the 190,000 queries timed
    assert "| 32 | 8 | 8 / 0 / " in text  # all 8 sampled queries equal to the fp32 reference of the bf16 vectors


def test_gpu_search_bench_imports_neither_pydantic_nor_faiss() -> None:
    # The GPU machine has torch and numpy but no pydantic or faiss.
    import subprocess

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import gpu_search_bench; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'faiss', 'pandas', 'yaml')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(BENCH)], check=True)
