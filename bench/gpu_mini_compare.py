"""`mbench run` of the generated mini benchmark on CUDA against the same runs on the CPU: every metric, every score.

    python bench/gpu_mini_compare.py --device cuda --out gpu-mini.md
    python bench/gpu_mini_compare.py --device cpu --out /tmp/mini.md    # the script itself, on a machine without a GPU

The same commands run once per device (``python -m mbench run``, separate results and cache
directories), with a tiny random CLIP-SF (every modality, so every mini task runs) and a tiny
random LLaVA-Next True/False reranker, both saved with ``save_pretrained``:

1. ``--tasks mini`` (the 16 mini M-BEIR tasks, the BEIR task and CIRCO val, local pools);
2. ``--tasks mini.mbeir --pool global`` (the 16 tasks on their union pool);
3. ``--tasks mini.mbeir.cirr.it2i --reranker llava-next-tf --rerank-top-k 10`` (reranks run 1's result).

Each result on the accelerator is compared with the CPU's (tolerances stated in
``tests/accelerator_tolerances.py``): every (query, candidate) score both run files hold within
``SCORE_TOL``; the accelerator's ranking in the CPU's score order except near ties
(``NEAR_TIE``); P("True") of every reranked pair within ``PROB_TOL``. Metrics are listed side
by side with the number of queries whose own value differs: with the first two checks met, a
metric can differ only through near-tie swaps. Exit status 0 when every result passes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from accelerator_tolerances import NEAR_TIE, PROB_TOL, SCORE_TOL, order_violations  # noqa: E402

RERANK_TASK = "mini.mbeir.cirr.it2i"


@dataclass
class Comparison:
    """One result compared across devices."""

    name: str
    n_queries: int
    max_score_deviation: float
    swaps: int
    metric_rows: list[tuple[str, float, float, int]] = field(default_factory=list)  # metric, cpu, accel, queries differing
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the accelerator's result agrees with the CPU's within the stated tolerances."""
        return not self.problems


def run_commands(model_dir: Path, reranker_dir: Path) -> list[list[str]]:
    """The `mbench run` argument lists, in order (the rerank reuses run 1's first stage)."""
    model = ["--model", "clip-sf", "--model-arg", f"name={model_dir}"]
    return [
        [*model, "--tasks", "mini"],
        [*model, "--tasks", "mini.mbeir", "--pool", "global"],
        [*model, "--tasks", RERANK_TASK, "--reranker", "llava-next-tf", "--reranker-arg", f"name={reranker_dir}",
         "--rerank-top-k", "10"],
    ]


@dataclass
class DeviceRuns:
    """The commands run on one device: where the results are, the wall seconds of each, the first failure."""

    results: Path
    seconds: list[float] = field(default_factory=list)
    failure: str | None = None


def run_on(device: str, commands: list[list[str]], work: Path) -> DeviceRuns:
    """Run the commands on ``device`` one after the other, output to a log under ``work``; stop at a failure."""
    label = device.replace(":", "")
    runs = DeviceRuns(work / f"results-{label}")
    log_path = work / f"mbench-run-{label}.log"
    work.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for i, args in enumerate(commands):
            argv = [sys.executable, "-m", "mbench", "run", *args, "--device", device, "--results-dir", str(runs.results),
                    "--cache-dir", str(work / f"cache-{label}"), "--no-progress"]
            log.write("$ " + " ".join(argv[1:]) + "\n")
            log.flush()
            start = time.perf_counter()
            code = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
            runs.seconds.append(time.perf_counter() - start)
            if code != 0:
                runs.failure = f"run {i + 1} on {device} exited with {code}"
                break
    if runs.failure:
        tail = log_path.read_text().splitlines()[-40:]
        print(f"{runs.failure}; the end of its log:\n" + "\n".join(tail), file=sys.stderr)
    return runs


def _scores_by_query(result: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """qid -> (docids best first, their scores) of the run file of the result in ``result``."""
    from mbench.results import read_result_run

    run = read_result_run(result)
    out = {}
    for row, qid in enumerate(run.qids):
        kept = run.ranking[row] >= 0
        out[str(qid)] = ([str(d) for d in run.docids[run.ranking[row][kept]]], run.scores[row][kept].astype(np.float64))
    return out


def compare_retrieval(name: str, cpu_dir: Path, accel_dir: Path) -> Comparison:
    """Scores, order and metrics of one retrieval result on both devices."""
    from mbench.results import PER_QUERY_FILE, read_per_query, read_result

    cpu_run, accel_run = _scores_by_query(cpu_dir), _scores_by_query(accel_dir)
    problems = []
    if set(cpu_run) != set(accel_run):
        problems.append(f"the runs rank different queries ({len(cpu_run)} vs {len(accel_run)})")
    deviation, swaps = 0.0, 0
    for qid in sorted(set(cpu_run) & set(accel_run)):
        cpu_score = dict(zip(*cpu_run[qid]))
        accel_docs, accel_scores = accel_run[qid]
        # Candidates the CPU's top-k also holds, in the accelerator's order, with their CPU scores.
        common = [(cpu_score[d], s) for d, s in zip(accel_docs, accel_scores) if d in cpu_score]
        if not common:
            continue
        reference = np.array([[c for c, _ in common]])
        deviation = max(deviation, float(np.abs(reference[0] - np.array([s for _, s in common])).max()))
        swaps += len(order_violations(reference, np.arange(len(common))[None, :], NEAR_TIE))
    if deviation > SCORE_TOL:
        problems.append(f"a score moved by {deviation:.4f} (tolerance {SCORE_TOL})")
    if swaps:
        problems.append(f"{swaps} candidate(s) out of the CPU's order beyond near ties ({NEAR_TIE})")
    cpu_result, accel_result = read_result(cpu_dir), read_result(accel_dir)
    comparison = Comparison(name, cpu_result.n_queries or 0, deviation, swaps, problems=problems)
    if (cpu_dir / PER_QUERY_FILE).exists() and (accel_dir / PER_QUERY_FILE).exists():
        cpu_table = read_per_query(cpu_dir / PER_QUERY_FILE).set_index("qid").sort_index()
        accel_table = read_per_query(accel_dir / PER_QUERY_FILE).set_index("qid").sort_index()
        for metric, value in sorted(cpu_result.metrics.items()):
            differing = int((cpu_table[metric] != accel_table[metric]).sum()) if metric in cpu_table else -1
            comparison.metric_rows.append((metric, value, accel_result.metrics.get(metric, float("nan")), differing))
    return comparison


def compare_rerank(name: str, cpu_dir: Path, accel_dir: Path) -> Comparison:
    """P("True") of every reranked pair, and the metrics, of one rerank result on both devices."""
    import pandas as pd

    from mbench.results import RERANK_SCORES_FILE, read_result

    cpu = pd.read_parquet(cpu_dir / RERANK_SCORES_FILE).set_index(["qid", "docid"])["score"]
    accel = pd.read_parquet(accel_dir / RERANK_SCORES_FILE).set_index(["qid", "docid"])["score"]
    # A near tie at the first stage's top-k boundary can put another candidate into one side's
    # top-k (the first-stage comparison judges that); P("True") is compared on the pairs both scored.
    joined = pd.concat([cpu, accel], axis=1, keys=["cpu", "accel"], join="inner")
    deviation = float((joined["cpu"] - joined["accel"]).abs().max()) if len(joined) else float("nan")
    problems = []
    if not len(joined):
        problems.append("no (query, candidate) pair was reranked on both devices")
    elif deviation > PROB_TOL:
        problems.append(f'a P("True") moved by {deviation:.4f} (tolerance {PROB_TOL})')
    cpu_result, accel_result = read_result(cpu_dir), read_result(accel_dir)
    comparison = Comparison(name, cpu_result.n_queries or 0, deviation, 0, problems=problems,
                            note=f"{len(joined)} pairs reranked on both devices, {len(cpu) - len(joined)} on the CPU only, "
                                 f"{len(accel) - len(joined)} on the accelerator only")
    for metric, value in sorted(cpu_result.metrics.items()):
        comparison.metric_rows.append((metric, value, accel_result.metrics.get(metric, float("nan")), -1))
    return comparison


def compare_all(cpu_results: Path, accel_results: Path) -> list[Comparison]:
    """Every result of the CPU run against the result at the same path of the accelerator's run."""
    from mbench.results import RESULT_FILE, read_result

    out = []
    for result in sorted(cpu_results.rglob(RESULT_FILE)):
        relative = result.parent.relative_to(cpu_results)
        accel_dir = accel_results / relative
        name = "/".join(relative.parts[2:])  # task/pool[/rerank-...], without model and fingerprint
        if not (accel_dir / RESULT_FILE).exists():
            out.append(Comparison(name, 0, float("nan"), 0, problems=["no result on the accelerator"]))
        elif read_result(result.parent).kind == "rerank":
            out.append(compare_rerank(name, result.parent, accel_dir))
        else:
            out.append(compare_retrieval(name, result.parent, accel_dir))
    return out


def report(device: str, commands: list[list[str]], comparisons: list[Comparison], seconds: dict[str, list[float]],
           failures: list[str], argv: list[str]) -> str:
    """The markdown report: versions, commands, one line per result, then every metric side by side.

    ``seconds``: the wall time of each command on "cpu" and on the "accelerator"; ``failures``:
    commands that exited with an error.
    """
    import torch
    import transformers

    accel = device
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    passed = sum(c.passed for c in comparisons)
    lines = [
        f"# `mbench run` of the mini benchmark: {accel} against cpu",
        "",
        f"Command: `python bench/gpu_mini_compare.py {' '.join(argv)}`; GPU: {gpu}; torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), transformers {transformers.__version__}, Python {sys.version.split()[0]}.",
        "",
        "Runs, each on cpu and on " + accel + " (model: a tiny random CLIP-SF; reranker: a tiny random LLaVA-Next):",
        "",
    ]
    for i, args in enumerate(commands):
        walls = [f"{seconds[side][i]:.1f} s on {name}" for side, name in (("cpu", "cpu"), ("accelerator", accel))
                 if i < len(seconds[side])]
        lines.append(f"{i + 1}. `mbench run {' '.join(args)} --device DEVICE` — wall {', '.join(walls) or 'not run'}")
    lines += [
        "",
        "Both devices' runs ran at the same time (separate processes), so these wall times are not speed figures.",
        "",
        *[f"**FAILED: {failure}** (its log's end is in the suite log)" for failure in failures],
        "",
        f"Tolerances: every (query, candidate) score within {SCORE_TOL}; ranking in the CPU's score order except "
        f"candidates within {NEAR_TIE} of each other (near ties); reranker P(\"True\") within {PROB_TOL}. "
        "A metric can then differ only through near-tie swaps.",
        "",
        f"**{passed} of {len(comparisons)} results agree.**",
        "",
        "| result | queries | max deviation (score; P(True) for a rerank) | swaps beyond near ties | metrics differing | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in comparisons:
        differing = sum(1 for _, a, b, _ in c.metric_rows if a != b)
        verdict = ("pass" if c.passed else "FAIL: " + "; ".join(c.problems)) + (f" ({c.note})" if c.note else "")
        lines.append(f"| {c.name} | {c.n_queries} | {c.max_score_deviation:.2e} | {c.swaps} | {differing} of "
                     f"{len(c.metric_rows)} | {verdict} |")
    lines += ["", "## Every metric", "", f"| result | metric | cpu | {accel} | delta | queries whose value differs |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for c in comparisons:
        for metric, cpu_value, accel_value, differing in c.metric_rows:
            shown = "-" if differing < 0 else str(differing)
            lines.append(f"| {c.name} | {metric} | {cpu_value:.6f} | {accel_value:.6f} | {accel_value - cpu_value:+.6f} | "
                         f"{shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Build the tiny models, run both devices, compare, print (and write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the device compared with cpu (cuda, cuda:N; cpu checks the script)")
    parser.add_argument("--work-dir", type=Path, default=None, help="models, caches and results (a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here too")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    from tiny_models import build_tiny_clip, build_tiny_llava_next

    with tempfile.TemporaryDirectory(prefix="mbench-mini-compare-") as temp:
        work = args.work_dir or Path(temp)
        commands = run_commands(build_tiny_clip(work / "clip"), build_tiny_llava_next(work / "reranker", seed=3))
        # The two devices run at the same time (separate processes, caches and results): the
        # comparison needs both, and the suite's time is short. Wall times are therefore no speed figures.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            on_cpu = pool.submit(run_on, "cpu", commands, work / "cpu")
            on_accelerator = pool.submit(run_on, args.device, commands, work / "accelerator")
            cpu, accelerator = on_cpu.result(), on_accelerator.result()
        comparisons = compare_all(cpu.results, accelerator.results) if cpu.results.is_dir() else []
        failures = [runs.failure for runs in (cpu, accelerator) if runs.failure]
    text = report(args.device, commands, comparisons, {"cpu": cpu.seconds, "accelerator": accelerator.seconds},
                  failures, argv)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if comparisons and not failures and all(c.passed for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
