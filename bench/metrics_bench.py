"""Time mbench's metrics against pytrec_eval and ranx on a run shaped like the M-BEIR test set.

The run: ``--queries`` queries (default 190,000, the M-BEIR test set) x top-``--depth`` (100)
candidates drawn from a pool of ``--pool`` (5.6M, the global M-BEIR pool) candidate ids, 1-20
relevant candidates per query with grades 1-3. Every library gets the same arrays; the
pytrec_eval and ranx times include building their inputs from those arrays, since that is
what scoring a harness's ranking with them costs. Values are asserted equal per query.

    python bench/metrics_bench.py                   # full size, writes bench/results/metrics.md
    python bench/metrics_bench.py --queries 20000   # quick run, writes nothing unless --write
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mbench.metrics import Relevance, evaluate  # noqa: E402
from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)
from bench_protocol import LoadRecord, alternating_orders, median, write_refusal  # noqa: E402

METRICS = ["hit@5", "recall@10", "ndcg@10", "map_cut@10", "mrr@10"]
# mbench name -> pytrec_eval measure. hit@5 is trec_eval's success_5 (1 if a relevant
# document is in the top 5), which pytrec_eval supports as the ``success`` measure. trec_eval
# has no cut-off for recip_rank: mrr@10 is recip_rank where it is >= 1/10 (first relevant
# within the top 10), else 0.
TREC_MEASURES = {
    "hit@5": "success_5",
    "recall@10": "recall_10",
    "ndcg@10": "ndcg_cut_10",
    "map_cut@10": "map_cut_10",
    "mrr@10": "recip_rank",
}
# mbench name -> ranx metric. ranx's ndcg is the linear-gain (Jarvelin) nDCG with the ideal
# from the qrels, as trec_eval; its map@k divides by all relevant, as trec_eval's map_cut.
RANX_METRICS = {
    "hit@5": "hit_rate@5",
    "recall@10": "recall@10",
    "ndcg@10": "ndcg@10",
    "map_cut@10": "map@10",
    "mrr@10": "mrr@10",
}
TOLERANCE = 1e-9


class Clock:
    """Wall-clock and process CPU seconds since construction (CPU time is steadier on a busy host)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds of every thread of this process)."""
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def make_run(n_queries: int, depth: int, pool: int, seed: int) -> tuple[np.ndarray, Relevance]:
    """A ranking (n_queries x depth, distinct ids per row) and its graded relevance."""
    rng = np.random.default_rng(seed)
    n_relevant = rng.integers(1, 21, size=n_queries)
    rows = np.repeat(np.arange(n_queries), n_relevant)
    relevant = rng.integers(0, pool, size=rows.size)
    # A query judges each candidate once: redraw the (rare) repeats until there are none.
    while True:
        keys = rows * pool + relevant
        order = np.argsort(keys)
        repeats = order[1:][keys[order][1:] == keys[order][:-1]]
        if repeats.size == 0:
            break
        relevant[repeats] = rng.integers(0, pool, size=repeats.size)
    grades = rng.integers(1, 4, size=rows.size)
    relevance = Relevance.from_pairs(rows, relevant, grades, n_queries)
    ranking = rng.integers(0, pool, size=(n_queries, depth))
    # Each relevant candidate is retrieved with probability 1/2, at a position skewed to the
    # top, so every metric sees a realistic spread of values.
    retrieved = rng.random(rows.size) < 0.5
    position = np.minimum((rng.random(rows.size) ** 2 * depth).astype(np.int64), depth - 1)
    ranking[rows[retrieved], position[retrieved]] = relevant[retrieved]
    # Random ids can collide within a row (or with a planted relevant one): replace the later
    # copies until every row holds distinct ids, as a real run does.
    while True:
        ordered = np.sort(ranking, axis=1)
        bad_rows, bad_cols = np.nonzero(ordered[:, 1:] == ordered[:, :-1])
        if bad_rows.size == 0:
            break
        for row, col in zip(bad_rows, bad_cols):
            where = np.flatnonzero(ranking[row] == ordered[row, col])
            ranking[row, where[1:]] = rng.integers(0, pool, size=where.size - 1)
    return ranking, relevance


def time_mbench(ranking: np.ndarray, rows: np.ndarray, cands: np.ndarray, grades: np.ndarray):
    """Relevance construction plus ``evaluate``: per-query arrays per metric."""
    clock = Clock()
    relevance = Relevance.from_pairs(rows, cands, grades, ranking.shape[0])
    results = evaluate(ranking, relevance, METRICS)
    return clock.stop(), results.per_query


def string_dicts(ranking: np.ndarray, rows: np.ndarray, cands: np.ndarray, grades: np.ndarray):
    """The ``{qid: {docid: grade}}`` qrels and ``{qid: {docid: score}}`` run both anchors take.

    Built inside each anchor's timing: turning arrays into these dicts is part of their end-to-end cost.
    """
    n_queries, depth = ranking.shape
    qids = [f"q{i}" for i in range(n_queries)]
    qrels: dict[str, dict[str, int]] = {qid: {} for qid in qids}
    for row, cand, grade in zip(rows.tolist(), cands.tolist(), grades.tolist()):
        qrels[qids[row]][f"c{cand}"] = grade
    # Strictly decreasing scores reproduce the ranking's order under trec_eval's and ranx's sort.
    scores = [float(depth - i) for i in range(depth)]
    run = {
        qid: {f"c{cand}": score for cand, score in zip(ranked, scores)}
        for qid, ranked in zip(qids, ranking.tolist())
    }
    return qids, qrels, run


def time_pytrec_eval(ranking: np.ndarray, rows: np.ndarray, cands: np.ndarray, grades: np.ndarray):
    """Dicts of string ids from the arrays, then pytrec_eval: per-query arrays per metric."""
    import pytrec_eval

    clock = Clock()
    qids, qrels, run = string_dicts(ranking, rows, cands, grades)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"success.5", "recall.10", "ndcg_cut.10", "map_cut.10", "recip_rank"})
    measured = evaluator.evaluate(run)
    elapsed = clock.stop()
    per_query = {
        name: np.array([measured[qid][measure] for qid in qids]) for name, measure in TREC_MEASURES.items()
    }
    reciprocal_rank = per_query["mrr@10"]
    per_query["mrr@10"] = np.where(reciprocal_rank >= 1.0 / 10, reciprocal_rank, 0.0)
    return elapsed, per_query


def time_ranx(ranking: np.ndarray, rows: np.ndarray, cands: np.ndarray, grades: np.ndarray):
    """ranx Qrels and Run from dicts of string ids built from the arrays, then ranx.evaluate."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    clock = Clock()
    qids, qrels_dict, run_dict = string_dicts(ranking, rows, cands, grades)
    qrels, run = Qrels.from_dict(qrels_dict), Run.from_dict(run_dict)
    del qrels_dict, run_dict
    ranx_evaluate(qrels, run, list(RANX_METRICS.values()), return_mean=False)
    elapsed = clock.stop()
    per_query = {
        name: np.array([run.scores[metric][qid] for qid in qids]) for name, metric in RANX_METRICS.items()
    }
    return elapsed, per_query


def warm_up_ranx(ranking: np.ndarray, relevance: Relevance) -> float:
    """Compile (or load from numba's cache) ranx's kernels outside the timing, on the first 50
    queries: the same id strings, so numba specialises on the same array dtypes as the timed run."""
    head = relevance.subset(np.arange(min(50, ranking.shape[0])))
    clock = Clock()
    time_ranx(ranking[: head.n_queries], head.row_ids(), head.indices, head.grades)
    return clock.stop()[0]


def assert_same(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], label: str) -> float:
    """Fail unless every metric agrees per query within TOLERANCE; returns the largest gap."""
    worst = 0.0
    for name in METRICS:
        gap = float(np.max(np.abs(reference[name] - other[name]))) if reference[name].size else 0.0
        if gap > TOLERANCE:
            raise AssertionError(f"{label} differs from mbench on {name}: max per-query gap {gap:.3g}")
        worst = max(worst, gap)
    return worst


def machine() -> dict[str, str]:
    """The machine (shared facts) plus the libraries this bench compares."""
    import ranx

    from importlib.metadata import version

    return {
        **machine_facts(),
        "numpy": np.__version__,
        "pytrec_eval": version("pytrec-eval-terrier"),
        "ranx": getattr(ranx, "__version__", None) or version("ranx"),
        "numba": version("numba"),
    }


def write_report(
    path: Path, args: argparse.Namespace, info: dict, times: dict, runs: dict, gaps: dict, means: dict, load: LoadRecord
) -> None:
    """The recorded result: machine, command, times and ratios."""
    lines = [
        "# Metrics benchmark",
        "",
        "Recorded by `bench/metrics_bench.py` (one process; the libraries run in alternating order over the "
        "repeats and each one's median is quoted).",
        "",
        "## Command",
        "",
        "```bash",
        "python " + " ".join(["bench/metrics_bench.py", *sys.argv[1:]]),
        "```",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in info.items()],
        f"- {load.describe()}" + (" (recorded with --allow-noisy)" if load.noisy else ""),
        "",
        "## Workload",
        "",
        f"- {args.queries:,} queries x top-{args.depth} (M-BEIR test set shape), candidate ids from a pool of "
        f"{args.pool:,}, 1-20 relevant per query with grades 1-3, seed {args.seed}",
        f"- metrics: {', '.join(METRICS)}",
        "- mbench: `Relevance.from_pairs` (the judgments arrive shuffled, as from a qrels file, so it sorts "
        "them) + `evaluate` on the integer arrays",
        "- pytrec_eval: build `{qid: {docid: grade}}` / `{qid: {docid: score}}` from the arrays, "
        "`RelevanceEvaluator(...).evaluate`; hit@5 is trec_eval's `success_5`, mrr@10 is `recip_rank` "
        "where it is >= 1/10, else 0 (trec_eval's recip_rank has no cut-off)",
        "- ranx: build the same dicts, `Qrels.from_dict`, `Run.from_dict`, `ranx.evaluate(return_mean=False)`; "
        "ranx's `ndcg` is linear-gain with the ideal from the qrels and its `map@k` divides by all relevant, "
        "so they are trec_eval's ndcg_cut and map_cut (the grades here are all > 0, so ranx's `rel_lvl` "
        "and trec_eval agree on what is relevant); numba kernels compiled (or loaded from numba's cache) "
        + (f"beforehand, outside the timing ({times['ranx warm-up']:.1f} s)" if "ranx warm-up" in times else "")
        + "",
        "- scores strictly decrease down each ranking, so trec_eval's and ranx's sort keep the array order",
        "- every metric asserted equal per query to 1e-9 between mbench and each library",
        "- wall: elapsed seconds; CPU: seconds of CPU used by the process (all threads; ranx's numba kernels "
        "run on every core). Where the load average exceeds the core count, other processes share the cores "
        "and wall times stretch; the CPU column is the steadier comparison",
        "",
        "## Times",
        "",
        f"Median of {args.repeats} repeats (the runs' wall seconds in the last column).",
        "",
        "| implementation | wall s | CPU s | wall ratio to mbench | CPU ratio to mbench | largest per-query gap | runs (wall s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    base_wall, base_cpu = times["mbench"]
    for label in ("mbench", "pytrec_eval", "ranx"):
        if label not in times:
            continue
        wall, cpu = times[label]
        gap = "-" if label == "mbench" else f"{gaps[label]:.1e}"
        listed = ", ".join(f"{w:.3f}" for w, _ in runs[label])
        lines.append(f"| {label} | {wall:.3f} | {cpu:.3f} | {wall / base_wall:.1f}x | {cpu / base_cpu:.1f}x | {gap} | {listed} |")
    lines += ["", "## Means (mbench)", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.6f} |" for name, value in means.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def report_line(label: str, times: dict) -> str:
    """One printed line: wall and CPU seconds, and the ratios to mbench."""
    wall, cpu = times[label]
    base_wall, base_cpu = times["mbench"]
    return f"{label:12s} wall {wall:8.3f} s ({wall / base_wall:6.1f}x)   CPU {cpu:8.3f} s ({cpu / base_cpu:6.1f}x)"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=190_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--pool", type=int, default=5_609_079)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", choices=["ranx", "pytrec_eval"], action="append", default=[])
    parser.add_argument(
        "--write",
        type=Path,
        nargs="?",
        const=REPO_ROOT / "bench" / "results" / "metrics.md",
        default=None,
        help="write the report (default path bench/results/metrics.md; full-size runs write it by default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per library, in alternating order (median quoted)")
    parser.add_argument("--allow-noisy", action="store_true", help="write even if the load average exceeded the core count")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.write is None and args.queries == 190_000 and not args.skip:
        args.write = REPO_ROOT / "bench" / "results" / "metrics.md"

    ranking, relevance = make_run(args.queries, args.depth, args.pool, args.seed)
    rows, cands, grades = relevance.row_ids(), relevance.indices, relevance.grades
    # Judgments arrive in file order, not sorted by query: shuffle them so that mbench pays for
    # sorting them, as it would on a real qrels file.
    shuffle = np.random.default_rng(args.seed + 1).permutation(rows.size)
    rows, cands, grades = rows[shuffle], cands[shuffle], grades[shuffle]
    print(f"{args.queries:,} queries x top-{args.depth}, {cands.size:,} judgments, pool {args.pool:,}")

    methods = {"mbench": time_mbench, "pytrec_eval": time_pytrec_eval, "ranx": time_ranx}
    methods = {name: fn for name, fn in methods.items() if name not in args.skip}
    times: dict = {}
    if "ranx" in methods:
        times["ranx warm-up"] = warm_up_ranx(ranking, relevance)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    values: dict[str, dict[str, np.ndarray]] = {}
    load = LoadRecord()
    for order in alternating_orders(list(methods), args.repeats):
        for name in order:
            clock, values[name] = methods[name](ranking, rows, cands, grades)
            runs[name].append(clock)
            print(f"  {name:12s} wall {clock[0]:8.3f} s   CPU {clock[1]:8.3f} s", flush=True)
            gc.collect()
    load.stop()
    for name, clocks in runs.items():
        times[name] = (median([w for w, _ in clocks]), median([c for _, c in clocks]))
    reference = values["mbench"]
    gaps = {name: assert_same(reference, other, name) for name, other in values.items() if name != "mbench"}
    for name in runs:
        print(report_line(name, times))
    print(f"values equal per query to {TOLERANCE:g}; largest gaps: {gaps}")
    means = {name: float(per_query.mean()) for name, per_query in reference.items()}
    # Equal values prove little if they are all zero: the planted relevant candidates must show.
    assert means["hit@5"] > 0.3 and means["ndcg@10"] > 0.05, means
    print("means: " + ", ".join(f"{name}={value:.4f}" for name, value in means.items()))
    print(f"RESULT metrics: mbench {times['mbench'][0]:.3f} s wall (median of {args.repeats}); "
          + ", ".join(f"{name} {times[name][0] / times['mbench'][0]:.1f}x" for name in runs if name != "mbench")
          + f"; {load.describe()}")
    if args.write is not None:
        refusal = write_refusal(load, args.allow_noisy)
        if refusal:
            print(refusal, file=sys.stderr)
            return 3
        write_report(args.write, args, machine(), times, runs, gaps, means, load)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
