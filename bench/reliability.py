"""The reliability campaign: hostile inputs, killed runs, failing disks, corrupted files and concurrent runs.

Per class it counts the cases tried and the cases that ended cleanly with nothing lost (see
``tests/campaign``), and writes the figures to ``bench/results/reliability.md``. A robustness
benchmark, not a timing one: the machine's load changes how long it takes, not what it finds.

    python bench/reliability.py                # the full campaign (tens of minutes), writes the results file
    python bench/reliability.py --quick        # a small slice; writes nothing unless --write

CI runs a fixed-seed slice of the same classes (``tests/test_reliability_campaign.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)

CLASSES = {
    "input": "hand-listed nasty inputs through the CLI (every file format mbench reads)",
    "fuzz": "generated inputs (hypothesis, checked against an oracle with pytrec_eval) and seeded mutations of every other file",
    "kill": "SIGKILL at a seeded point of a run (encoding, shard writes, search, result writing, reranking), then resume",
    "io-error": "ENOSPC or EIO injected into a writer (shards, records, manifests, results, rerank scores), then resume",
    "corruption": "a stored file (shard, record, manifest, result.json, run file, per-query or rerank table) truncated or bit-flipped",
    "concurrency": "two runs at once on the same cache and results roots, and `mbench cache gc` in a loop beside a run",
}
FULL = {"fuzz": 600, "mutations": 1400, "kills": 60, "io_errors": 30, "corruptions": 140, "pairs": 6, "gc": 6}
QUICK = {"fuzz": 40, "mutations": 60, "kills": 4, "io_errors": 3, "corruptions": 6, "pairs": 1, "gc": 1}


def campaign(counts: dict[str, int], seed: int, work: Path, tasks: str) -> tuple:
    """Run every class; returns the tally and the seconds each class took."""
    from campaign import corpus, crashes, fuzz
    from campaign.outcome import Tally

    tally, seconds = Tally(), {}

    def timed(klass: str, run) -> None:
        started = time.perf_counter()
        tally.extend(run())
        seconds[klass] = seconds.get(klass, 0.0) + time.perf_counter() - started
        print(f"{klass}: {tally.clean.get(klass, 0)}/{tally.tried.get(klass, 0)} clean", file=sys.stderr, flush=True)

    with crashes.in_environment(work / "environment-cache"):
        timed("input", lambda: corpus.run_corpus(work / "corpus"))
        material = corpus.material_in(work / "corpus")
        timed("fuzz", lambda: fuzz.fuzz_score(counts["fuzz"], seed, work / "fuzz"))
        timed("fuzz", lambda: fuzz.fuzz_mutations(counts["mutations"], seed, work / "mutations", material))
        crash = crashes.Campaign(work / "crashes", tasks=tasks)
        started = time.perf_counter()
        crash.prepare()
        seconds["reference run"] = time.perf_counter() - started
        timed("kill", lambda: [crash.kill_case(p, v) for p, v in crash.kill_points(counts["kills"], seed)])
        timed("io-error", lambda: [crash.io_error_case(k, p, v) for k, p, v in crash.io_error_points(counts["io_errors"], seed)])
        rng = random.Random(seed)
        kinds = sorted(crash.CORRUPTIBLE)
        timed("corruption", lambda: [crash.corruption_case(kinds[i % len(kinds)], ("truncate", "flip")[(i // len(kinds)) % 2], rng)
                                     for i in range(counts["corruptions"])])
        timed("concurrency", lambda: [crash.concurrent_runs_case(i) for i in range(counts["pairs"])]
              + [crash.gc_beside_run_case(i) for i in range(counts["gc"])])
    return tally, seconds, crash.ref


def report(tally, seconds: dict[str, float], reference, argv: list[str], seed: int, tasks: str,
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The markdown record of a campaign."""
    lines = ["# Reliability campaign", "", "Recorded by `bench/reliability.py` (one run of the whole campaign).", "",
             "## Command", "", "```bash", "python bench/reliability.py " + " ".join(argv), "```", "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine_facts().items()]
    lines += [f"- load average before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
              f"{', '.join(f'{x:.2f}' for x in load_after)} (a robustness run: load changes its duration, not its findings)",
              "", "## Workload", "", f"- seed {seed}; crash scenario: `mbench run --model hash-embed --tasks {tasks}` "
              "with `--shard-size 16 --batch-size 8` and a reranker over the top 5 (`campaign.plugins:pair_reranker`, "
              "`--rerank-batch-size 4`)",
              f"- the scenario's uninterrupted run passes {len(reference.points)} fault points, encodes "
              f"{reference.encodes} items and scores {reference.pairs} pairs",
              "- clean ending: refused inputs exit 2 with one message naming the file and the line, JSON path or id "
              "(no traceback); accepted inputs give exactly their clean twin's output (fuzz: pytrec_eval's numbers); "
              "crashed runs resume to the reference's files (run files, per-query and rerank tables byte for byte, "
              "result.json except timestamps, timings and cache statistics), `mbench cache verify` passes, and the "
              "resume encodes exactly the items of incomplete shards and scores exactly the pairs not cached",
              "", "## Results", "", "| class | what | tried | clean | share | minutes |", "|---|---|---:|---:|---:|---:|"]
    for klass, what in CLASSES.items():
        tried, clean = tally.tried.get(klass, 0), tally.clean.get(klass, 0)
        share = f"{100 * clean / tried:.1f}%" if tried else "-"
        lines.append(f"| {klass} | {what} | {tried} | {clean} | {share} | {seconds.get(klass, 0) / 60:.1f} |")
    total_tried, total_clean = sum(tally.tried.values()), sum(tally.clean.values())
    lines += [f"| all | | {total_tried} | {total_clean} | {100 * total_clean / max(total_tried, 1):.1f}% | "
              f"{sum(seconds.values()) / 60:.1f} |", ""]
    if tally.failures:
        lines += ["## Cases that did not end cleanly", ""]
        lines += [f"- {v.klass}: {v.name}: {v.detail}" for v in tally.failures]
    else:
        lines.append("Every case ended cleanly.")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the campaign and print (or write) its record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small slice of every class")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--tasks", default=None, help="tasks of the crash scenario (default: three mini tasks)")
    parser.add_argument("--write", action="store_true", help="write bench/results/reliability.md (default for a full run)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the cases (default: a temporary one)")
    args = parser.parse_args()
    from campaign.crashes import TASKS

    counts = QUICK if args.quick else FULL
    tasks = args.tasks or TASKS
    work = args.work or Path(tempfile.mkdtemp(prefix="mbench-reliability-"))
    load_before = os.getloadavg()
    tally, seconds, reference = campaign(counts, args.seed, work, tasks)
    text = report(tally, seconds, reference, sys.argv[1:], args.seed, tasks, load_before, os.getloadavg())
    print(text)
    if args.write or not args.quick:
        target = REPO_ROOT / "bench" / "results" / "reliability.md"
        target.write_text(text)
        print(f"wrote {target}", file=sys.stderr)
    return 0 if not tally.failures else 1


if __name__ == "__main__":
    sys.exit(main())
