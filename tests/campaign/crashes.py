"""Killed processes, failing disks, corrupted files and concurrent runs, on one `mbench run` scenario.

The scenario: hash-embed on three mini tasks (BEIR text, M-BEIR text->image, CIRCO), small
shards, and a reranker over the top 5 of every task, so one run passes every stage: encoding,
shard writes, search, result writing and reranking. Its uninterrupted run in fresh roots is the
reference: the files it leaves, the fault points it passes (``MBENCH_FAULT_TRACE``), the items
it encodes and the pairs it scores.

Every case starts from fresh roots (or a copy of the reference's) and ends cleanly when the run
resumes to results equal to the reference's (run files, per-query tables and rerank scores byte
for byte; ``result.json`` except its timestamps, timings and cache statistics), `mbench cache
verify` passes, and nothing finished was computed twice: the resumed run encodes exactly the
items of the shards that were not complete and scores exactly the pairs not in the score cache.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from campaign.outcome import Verdict, environment, run_cli

TASKS = "mini.beir.towns,mini.mbeir.mscoco.t2i,mini.circo.val"
# Fault points grouped by the stage they belong to; kills are spread over the groups evenly.
STAGES = {
    "encoding": ("encode.batch",),
    "shard writes": ("store.shard", "write.shard", "rename.shard", "write.shard_record", "rename.shard_record",
                     "write.manifest", "rename.manifest"),
    "search": ("search.tile",),
    "result writing": ("write.run", "rename.run", "write.per_query", "rename.per_query", "write.result",
                       "rename.result", "write.submission", "rename.submission"),
    "reranking": ("rerank.batch", "write.rerank_scores", "rename.rerank_scores", "write.score_cache"),
}
def stage_of(point: str) -> str:
    """The stage a fault point belongs to (a key of ``STAGES``)."""
    return next(stage for stage, points in STAGES.items() if point in points)


# result.json fields that differ between equal runs: when, how long, and what the caches held.
VOLATILE_KEYS = ("created", "timings", "pairs_scored", "pairs_cached", "result_sha256", "checksum")


@dataclass
class Roots:
    """The folders of one case: cache and results roots, and the logs of what was computed."""

    base: Path

    @property
    def cache(self) -> Path:
        return self.base / "cache"

    @property
    def results(self) -> Path:
        return self.base / "results"

    @property
    def encode_log(self) -> Path:
        return self.base / "encoded.log"

    @property
    def pair_log(self) -> Path:
        return self.base / "pairs.log"

    @property
    def trace(self) -> Path:
        return self.base / "trace.log"

    def log(self, label: str) -> Path:
        return self.base / f"{label}.out"


def run_argv(roots: Roots, tasks: str) -> list[str]:
    """The scenario's `mbench run` argv writing into ``roots``."""
    return ["run", "--model", "hash-embed", "--tasks", tasks, "--results-dir", str(roots.results),
            "--cache-dir", str(roots.cache), "--no-progress", "--device", "cpu", "--shard-size", "16",
            "--batch-size", "8", "--model-arg", f"call_log={roots.encode_log}",
            "--reranker", "campaign.plugins:pair_reranker", "--reranker-arg", f"pair_log={roots.pair_log}",
            "--rerank-top-k", "5", "--rerank-batch-size", "4"]


class Workers:
    """Runs `mbench` in processes forked from one server that imported mbench and torch once."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["campaign.child"])

    def start(self, argv: list[str], log: Path, *, faults: str = "", trace: Path | None = None,
              env: dict[str, str] | None = None) -> multiprocessing.process.BaseProcess:
        """Start `mbench argv...` (output appended to ``log``) with ``faults`` planned."""
        from campaign.child import main_in_child

        settings = {"HF_HUB_OFFLINE": "1", **(env or {})}
        process = self.context.Process(target=main_in_child,
                                       args=(argv, str(log), faults, None if trace is None else str(trace), settings))
        process.start()
        return process

    def run(self, argv: list[str], log: Path, *, faults: str = "", trace: Path | None = None,
            timeout: float = 600) -> int:
        """Run to the end and return the exit code (-9: killed by SIGKILL; -1: timed out and killed)."""
        process = self.start(argv, log, faults=faults, trace=trace)
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            return -1
        return int(process.exitcode)


def _share_mini(roots: Roots, mini: Path) -> None:
    """Point the case's cache at the one generated mini benchmark (generating it per case costs seconds)."""
    (roots.cache / "data").mkdir(parents=True, exist_ok=True)
    (roots.cache / "data" / mini.name).symlink_to(mini)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def snapshot(results: Path, *bases: Path) -> dict[str, bytes | dict]:
    """Every file under ``results`` by relative path: bytes, or for ``result.json`` the record without its
    volatile fields and with the case folders (``bases``) written as ``<root>``."""
    files: dict[str, bytes | dict] = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        relative = str(path.relative_to(results))
        relative = re.sub(r"/[0-9a-f]{12}/", "/<fp>/", relative)
        data = path.read_bytes()
        if path.name == "result.json":
            try:
                text = data.decode()
                for base in bases:
                    text = text.replace(str(base), "<root>")
                files[relative] = _stable_record(json.loads(text))
            except (UnicodeDecodeError, json.JSONDecodeError):
                files[relative] = data
        else:
            files[relative] = data
    return files


def _stable_record(value: object) -> object:
    if isinstance(value, dict):
        return {k: _stable_record(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_stable_record(v) for v in value]
    return value


def _snapshot_difference(got: dict, expected: dict) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    parts = [f"{label}: {names[:4]}" for label, names in (("missing", missing), ("extra", extra), ("changed", changed)) if names]
    return "; ".join(parts)


def stored_rows(cache: Path) -> int:
    """Rows of the embedding store held in complete, verified shards."""
    from mbench.engine.cache import store_root
    from mbench.engine.cache.store import EmbeddingStore

    total = 0
    for entry in EmbeddingStore(store_root(cache)).entries():
        total += sum(len(entry.shard_range(i)) for i in range(entry.n_shards)
                     if entry.check_shard(i, verify=True).status == "ok")
    return total


def cached_pairs(cache: Path) -> int:
    """Pair scores committed to the rerank score cache."""
    path = cache / "rerank" / "scores.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])


def cache_verifies(cache: Path) -> str:
    """'' when `mbench cache verify` passes on ``cache``, else its output."""
    result = run_cli(["cache", "verify", "--cache-dir", str(cache)])
    return "" if result.code == 0 and result.traceback is None else f"cache verify: {result.stdout[-300:]}{result.traceback or ''}"


@dataclass
class Reference:
    """The uninterrupted run: its roots, files, fault points, items encoded and pairs scored."""

    roots: Roots
    files: dict[str, bytes | dict]
    points: list[str]
    encodes: int
    pairs: int
    mini: Path

    def visits(self) -> Counter:
        """How often the run reached each point."""
        return Counter(self.points)


@dataclass
class Campaign:
    """Shared state of the crash classes: the workers, the reference, where cases go."""

    base: Path
    tasks: str = TASKS
    workers: Workers = field(default_factory=Workers)
    reference: Reference | None = None
    cases: int = 0

    def fresh(self, label: str) -> Roots:
        """Empty roots for one case, sharing the generated mini benchmark."""
        self.cases += 1
        roots = Roots(self.base / f"{self.cases:04d}-{label}")
        roots.base.mkdir(parents=True)
        _share_mini(roots, self.ref.mini)
        return roots

    @property
    def ref(self) -> Reference:
        assert self.reference is not None, "call prepare() first"
        return self.reference

    def prepare(self) -> Reference:
        """Generate the mini benchmark and run the scenario once, uninterrupted, tracing its fault points."""
        from mbench.data.mini import ensure_mini

        mini = ensure_mini(self.base / "mini")
        roots = Roots(self.base / "reference")
        roots.base.mkdir(parents=True)
        self.reference = Reference(roots, {}, [], 0, 0, mini)
        _share_mini(roots, mini)
        code = self.workers.run(run_argv(roots, self.tasks), roots.log("run"), trace=roots.trace)
        if code != 0:
            raise RuntimeError(f"the reference run failed (exit {code}): {roots.log('run').read_text()[-2000:]}")
        self.reference = Reference(roots, snapshot(roots.results, roots.base), roots.trace.read_text().splitlines(),
                                   _lines(roots.encode_log), _lines(roots.pair_log), mini)
        return self.reference

    # -- endings ------------------------------------------------------------------------------------
    def unlike_reference(self, roots: Roots) -> list[str]:
        """How the results and cache in ``roots`` fall short of the reference's (empty: they do not)."""
        problems = []
        difference = _snapshot_difference(snapshot(roots.results, roots.base, self.ref.roots.base), self.ref.files)
        if difference:
            problems.append(f"results differ from the reference ({difference})")
        verify = cache_verifies(roots.cache)
        if verify:
            problems.append(verify)
        return problems

    def resumed_cleanly(self, roots: Roots, label: str) -> str:
        """Resume the scenario in ``roots``; '' when it ends equal to the reference with nothing recomputed."""
        rows, pairs = stored_rows(roots.cache), cached_pairs(roots.cache)
        encodes_before, pairs_before = _lines(roots.encode_log), _lines(roots.pair_log)
        code = self.workers.run(run_argv(roots, self.tasks), roots.log(label))
        if code != 0:
            return f"resume exit {code}: {roots.log(label).read_text()[-600:]!r}"
        problems = self.unlike_reference(roots)
        encoded = _lines(roots.encode_log) - encodes_before
        if encoded != self.ref.encodes - rows:
            problems.append(f"resume encoded {encoded} items, expected {self.ref.encodes - rows} "
                            f"({rows} rows were stored in complete shards)")
        scored = _lines(roots.pair_log) - pairs_before
        if scored != self.ref.pairs - pairs:
            problems.append(f"resume scored {scored} pairs, expected {self.ref.pairs - pairs} ({pairs} were cached)")
        return "; ".join(problems)

    # -- kills --------------------------------------------------------------------------------------
    def kill_points(self, n: int, seed: int) -> list[tuple[str, int]]:
        """``n`` (point, visit) pairs of the reference trace, spread evenly over the stages, seeded."""
        rng = random.Random(seed)
        visits = self.ref.visits()
        by_stage = {stage: [(p, k) for p in points for k in range(1, visits[p] + 1)]
                    for stage, points in STAGES.items()}
        by_stage = {stage: sorted(options) for stage, options in by_stage.items() if options}
        chosen: list[tuple[str, int]] = []
        stages = sorted(by_stage)
        while len(chosen) < n:
            stage = stages[len(chosen) % len(stages)]
            options = [o for o in by_stage[stage] if o not in chosen] or by_stage[stage]
            chosen.append(rng.choice(options))
        return chosen

    def kill_case(self, point: str, visit: int) -> Verdict:
        """SIGKILL the scenario at the ``visit``-th time it reaches ``point``, then resume it."""
        name = f"kill at {point} #{visit}"
        roots = self.fresh("kill")
        code = self.workers.run(run_argv(roots, self.tasks), roots.log("killed"), faults=f"kill:{point}:{visit}")
        if code != -9:
            return Verdict("kill", name, False, f"not killed (exit {code}): {roots.log('killed').read_text()[-400:]!r}")
        why = self.resumed_cleanly(roots, "resumed")
        return Verdict("kill", name, not why, why)

    # -- full or failing disks ------------------------------------------------------------------------
    def io_error_points(self, n: int, seed: int) -> list[tuple[str, str, int]]:
        """``n`` (kind, write point, visit) triples, every writer of the reference in turn, seeded."""
        rng = random.Random(seed)
        visits = self.ref.visits()
        writers = sorted(p for p in visits if p.startswith("write."))
        chosen = []
        for number in range(n):
            point = writers[number % len(writers)]
            chosen.append((rng.choice(["enospc", "eio"]), point, rng.randint(1, visits[point])))
        return chosen

    def io_error_case(self, kind: str, point: str, visit: int) -> Verdict:
        """Fail the ``visit``-th write at ``point`` with ENOSPC or EIO: a clean error, then a complete resume."""
        name = f"{kind} at {point} #{visit}"
        roots = self.fresh(kind)
        code = self.workers.run(run_argv(roots, self.tasks), roots.log("failed"), faults=f"{kind}:{point}:{visit}")
        output = roots.log("failed").read_text()
        strerror = os.strerror(28 if kind == "enospc" else 5)
        problems = []
        if code != 2:
            problems.append(f"exit {code}, expected 2")
        if "Traceback (most recent call last)" in output:
            problems.append("a traceback")
        if strerror not in output or "error:" not in output:
            problems.append(f"no clean error saying {strerror!r}")
        elif not re.search(r"error: .*(/|\\)", output):
            problems.append("the error names no file")
        if problems:
            return Verdict("io-error", name, False, "; ".join(problems) + f": {output[-500:]!r}")
        why = self.resumed_cleanly(roots, "resumed")
        return Verdict("io-error", name, not why, why)

    # -- corruption of stored files ---------------------------------------------------------------------
    CORRUPTIBLE = {
        "shard": r"^cache/embeddings/[0-9a-f]+/shard-\d+-[0-9a-f]+\.npy$",
        "shard record": r"^cache/embeddings/[0-9a-f]+/shard-\d+\.json$",
        "manifest": r"^cache/embeddings/[0-9a-f]+/manifest\.json$",
        "result.json": r"^results/.*/result\.json$",
        "run file": r"^results/.*/run\.trec\.gz$",
        "per-query table": r"^results/.*/per_query\.parquet$",
        "rerank scores": r"^results/.*/rerank_scores\.parquet$",
    }

    def corruption_case(self, what: str, how: str, rng: random.Random) -> Verdict:
        """Truncate or bit-flip one stored file of the complete reference state; it must be detected and rebuilt."""
        roots = self.fresh("corrupt")
        for sub in ("cache", "results"):
            shutil.copytree(self.ref.roots.base / sub, roots.base / sub, symlinks=True, dirs_exist_ok=True,
                            ignore=lambda folder, names: ["data"] if Path(folder).name == "cache" else [])
        candidates = sorted(str(p.relative_to(roots.base)) for p in roots.base.rglob("*")
                            if p.is_file() and re.match(self.CORRUPTIBLE[what], str(p.relative_to(roots.base))))
        relative = rng.choice(candidates)
        path = roots.base / relative
        data = path.read_bytes()
        if how == "truncate":
            cut = rng.randrange(len(data))
            path.write_bytes(data[:cut])
            change = f"truncated to {cut} of {len(data)} bytes"
        else:
            bit = rng.randrange(len(data) * 8)
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            path.write_bytes(bytes(flipped))
            change = f"bit {bit} flipped"
        name = f"{what} {relative.split('/')[-1]} {change}"
        detected = self._detected(roots, path, what)
        if detected:
            return Verdict("corruption", name, False, detected)
        rows, pairs = stored_rows(roots.cache), cached_pairs(roots.cache)
        encodes_before, pairs_before = _lines(roots.encode_log), _lines(roots.pair_log)
        # Result files are checked whenever a run meets them; cached embeddings only when a run
        # needs them, so for those the rerun recomputes the results from the cache.
        cache_file = what in ("shard", "shard record", "manifest")
        argv = run_argv(roots, self.tasks) + (["--overwrite"] if cache_file else [])
        code = self.workers.run(argv, roots.log("rerun"))
        if code != 0:
            return Verdict("corruption", name, False, f"rerun exit {code}: {roots.log('rerun').read_text()[-500:]!r}")
        problems = self.unlike_reference(roots)
        encoded = _lines(roots.encode_log) - encodes_before
        if encoded > self.ref.encodes - rows:
            problems.append(f"rerun encoded {encoded} items, at most {self.ref.encodes - rows} were missing")
        if _lines(roots.pair_log) - pairs_before > self.ref.pairs - pairs:
            problems.append("rerun scored cached pairs again")
        return Verdict("corruption", name, not problems, "; ".join(problems))

    def _detected(self, roots: Roots, path: Path, what: str) -> str:
        """'' when reading the corrupted file reports it (naming it), else what went wrong."""
        if path.parent.parent.name == "embeddings" or what in ("shard", "shard record", "manifest"):
            result = run_cli(["cache", "verify", "--cache-dir", str(roots.cache)])
            output = result.stdout + result.stderr
            if result.traceback is not None:
                return "cache verify: traceback " + result.traceback.strip().splitlines()[-1]
            if result.code != 2 or path.parent.name[:12] not in output:
                return f"cache verify did not report entry {path.parent.name[:12]} (exit {result.code}): {output[-300:]!r}"
            return ""
        from mbench.errors import MbenchError
        from mbench.results import verify_result

        try:
            verify_result(path.parent)
        except MbenchError as err:
            return "" if path.name in str(err) else f"the error does not name {path.name}: {err}"
        except Exception as err:  # noqa: BLE001 - any other escape is a finding
            return f"{type(err).__name__} escaped: {err}"
        return "not detected: the result folder reads as complete"

    # -- concurrency --------------------------------------------------------------------------------------
    def concurrent_runs_case(self, number: int) -> Verdict:
        """Two runs at once on the same roots, over overlapping tasks; both finish equal to the reference."""
        roots = self.fresh("pair")
        tasks = self.tasks.split(",")
        first = ",".join(tasks[:2])
        second = ",".join(tasks[1:] or tasks) if number % 2 == 0 else ",".join(reversed(tasks))
        processes = [self.workers.start(run_argv(roots, t), roots.log(f"run{i}")) for i, t in enumerate((first, second))]
        for process in processes:
            process.join(600)
        codes = [p.exitcode for p in processes]
        name = f"runs of {first} and {second} at once"
        if codes != [0, 0]:
            logs = " | ".join(roots.log(f"run{i}").read_text()[-300:] for i in range(2))
            return Verdict("concurrency", name, False, f"exit codes {codes}: {logs!r}")
        problems = self.unlike_reference(roots)
        return Verdict("concurrency", name, not problems, "; ".join(problems))

    def gc_beside_run_case(self, number: int) -> Verdict:
        """`mbench cache gc` (aggressive: no grace, no idle time; every other pass `--all`) in a loop beside a run."""
        roots = self.fresh("gc")
        process = self.workers.start(run_argv(roots, self.tasks), roots.log("run"))
        passes, problems = 0, []
        while process.exitcode is None:
            argv = ["cache", "gc", "--cache-dir", str(roots.cache), "--older-than-days", "0", "--tmp-grace-minutes", "0"]
            if (passes + number) % 2:
                argv.append("--all")
            result = run_cli(argv)
            if result.traceback is not None or result.code != 0:
                problems.append(f"gc pass {passes}: exit {result.code} {(result.traceback or result.stderr)[-300:]!r}")
                break
            passes += 1
            time.sleep(0.05)
        process.join(600)
        name = f"cache gc x{passes} beside a run"
        if process.exitcode != 0:
            return Verdict("concurrency", name, False,
                           f"run exit {process.exitcode}: {roots.log('run').read_text()[-500:]!r}")
        problems += self.unlike_reference(roots)
        return Verdict("concurrency", name, not problems, "; ".join(problems))


def in_environment(cache: Path):
    """The environment every in-process check of the crash classes runs in."""
    return environment(HF_HUB_OFFLINE="1", MBENCH_CACHE=str(cache), MBENCH_FAULT=None, MBENCH_FAULT_TRACE=None)
