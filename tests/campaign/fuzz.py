"""Generated hostile inputs: hypothesis strategies for the files `mbench score` reads, judged
against an independent oracle, and seeded byte/line mutations of every other file mbench reads.

The oracle of `mbench score` is a plain reference parser written here from the format rules
(fields split on spaces and tabs; ids non-empty without whitespace or control characters; ranks
non-negative integers; scores finite decimals; grades integers; no pair twice) plus pytrec_eval
for the numbers. A case ends cleanly when mbench and the oracle agree: both refuse (and mbench's
message names the file, and the line when the oracle finds exactly one bad line), or both accept
and every per-query value equals pytrec_eval's.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from campaign.outcome import Verdict, judge_refusal, run_cli

FUZZ_METRICS = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "map_cut@10": "map_cut_10", "precision@5": "P_5"}

# -- the oracle -----------------------------------------------------------------------------------

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_INT = re.compile(r"-?\d+", re.ASCII)
_SEPARATORS = re.compile(r"[ \t\r]+")
INT64 = 2**63


@dataclass(frozen=True)
class Refusal:
    """The oracle refuses the file; ``lines`` are the 1-based lines it found bad (empty: the whole file)."""

    lines: tuple[int, ...] = ()


def valid_id(text: str) -> bool:
    """An id is non-empty, without whitespace (any Unicode space) or control characters."""
    return bool(text) and not any(unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cc") for c in text)


def _tab_id(text: str) -> bool:
    """An id of a tab-separated file: as ``valid_id``, except that plain spaces may occur inside it."""
    return bool(text.strip(" ")) and valid_id(text.replace(" ", "x"))


def _text_lines(data: bytes) -> list[tuple[int, str | None]] | Refusal:
    """Numbered lines of a text file (gzip and a leading UTF-8 BOM allowed); None for a line that is not UTF-8."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return Refusal()
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines: list[tuple[int, str | None]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            lines.append((number, None))
    return lines


def _int_ok(text: str, *, minimum: int = -INT64) -> bool:
    return bool(_INT.fullmatch(text)) and minimum <= int(text) < INT64


def _score_ok(text: str) -> bool:
    return bool(_FLOAT.fullmatch(text)) and math.isfinite(float(text))


def parse_run(data: bytes) -> dict[str, dict[str, float]] | Refusal:
    """The reference reading of a TREC run: ``{qid: {docid: score}}`` or a Refusal."""
    lines = _text_lines(data)
    if isinstance(lines, Refusal):
        return lines
    bad, seen, run = [], set(), {}
    for number, line in lines:
        if line is None:
            bad.append(number)
            continue
        fields = _SEPARATORS.split(line.strip(" \t\r"))
        if fields == [""]:
            continue
        ok = (len(fields) == 6 and all(valid_id(f) for f in fields) and _int_ok(fields[3], minimum=0)
              and _score_ok(fields[4]))
        if not ok:
            bad.append(number)
            continue
        key = (fields[0], fields[2])
        if key in seen:
            bad.append(number)
        seen.add(key)
        run.setdefault(fields[0], {})[fields[2]] = float(fields[4])
    return Refusal(tuple(bad)) if bad else run


def parse_qrels(data: bytes, fmt: str) -> dict[str, dict[str, int]] | Refusal:
    """The reference reading of TREC (4 fields), M-BEIR (5) or BEIR (header, 3 tab-separated) qrels."""
    lines = _text_lines(data)
    if isinstance(lines, Refusal):
        return lines
    bad, qrels = [], {}
    if fmt == "beir":
        if not lines or lines[0][1] is None or lines[0][1].rstrip("\r") != "query-id\tcorpus-id\tscore":
            return Refusal((1,))
        lines = lines[1:]
    for number, line in lines:
        if line is None:
            bad.append(number)
            continue
        if fmt == "beir":
            stripped = line[:-1] if line.endswith("\r") else line
            if not stripped.strip(" \t"):
                continue
            fields = stripped.split("\t")
            ok = (len(fields) == 3 and _tab_id(fields[0]) and _tab_id(fields[1]) and _int_ok(fields[2]))
            qid, docid, grade = (fields + ["", "", ""])[:3]
        else:
            fields = _SEPARATORS.split(line.strip(" \t\r"))
            if fields == [""]:
                continue
            width = 4 if fmt == "trec" else 5
            ok = (len(fields) == width and all(valid_id(f) for f in fields) and _int_ok(fields[3])
                  and (fmt == "trec" or _int_ok(fields[4])))
            qid, docid, grade = (fields + [""] * 4)[0], (fields + [""] * 4)[2], (fields + [""] * 4)[3]
        if not ok:
            bad.append(number)
            continue
        if docid in qrels.get(qid, {}):
            bad.append(number)
        qrels.setdefault(qid, {})[docid] = int(grade)
    if bad:
        return Refusal(tuple(bad))
    if not qrels:
        return Refusal()
    return qrels


def expected_per_query(run: dict, qrels: dict) -> dict[str, dict[str, float]] | Refusal:
    """pytrec_eval's values for the queries in both that have a positive grade and no negative one.

    Queries without a relevant document are left out of the comparison: pytrec_eval crashes
    (segfaults) on qrels where no query has one, and their rule is issue 10's to settle.
    """
    import pytrec_eval

    shared = sorted(set(run) & set(qrels))
    if not shared:
        return Refusal()
    comparable = [q for q in shared if any(g > 0 for g in qrels[q].values()) and min(qrels[q].values()) >= 0]
    if not comparable:
        return {}
    evaluator = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in comparable}, set(FUZZ_METRICS.values()))
    values = evaluator.evaluate({q: run[q] for q in comparable})
    return {q: {ours: values[q][theirs] for ours, theirs in FUZZ_METRICS.items()} for q in comparable}


def judge_score(run_bytes: bytes, qrels_bytes: bytes, fmt: str, folder: Path, name: str,
                run_name: str = "run.txt") -> Verdict:
    """Run `mbench score` on the two files and judge it against the oracle."""
    folder.mkdir(parents=True, exist_ok=True)
    run_path = folder / run_name
    qrels_path = folder / {"trec": "qrels.txt", "mbeir": "qrels.mbeir", "beir": "qrels.tsv"}[fmt]
    run_path.write_bytes(run_bytes)
    qrels_path.write_bytes(qrels_bytes)
    argv = ["score", str(run_path), str(qrels_path), "--qrels-format", fmt, "--format", "json", "--per-query",
            "--metrics", ",".join(FUZZ_METRICS)]
    result = run_cli(argv)
    run, qrels = parse_run(run_bytes), parse_qrels(qrels_bytes, fmt)
    refusal = next((r for r in (run, qrels) if isinstance(r, Refusal)), None)
    blamed = run_path if isinstance(run, Refusal) else qrels_path
    expected = refusal or expected_per_query(run, qrels)  # type: ignore[arg-type]
    if isinstance(expected, Refusal):
        if isinstance(run, Refusal) or isinstance(qrels, Refusal):
            where = rf"{re.escape(blamed.name)}:{expected.lines[0]}\b" if len(expected.lines) == 1 else None
            why = judge_refusal(result, blamed.name, where)
        else:  # no query in both: either file may be blamed
            why = judge_refusal(result, run_path.name) and judge_refusal(result, qrels_path.name)
        if why and result.code == 0:
            why = "accepted what the oracle refuses: " + why
        return Verdict("fuzz", name, not why, why)
    if result.code != 0 or result.traceback is not None:
        detail = result.traceback or result.stderr
        return Verdict("fuzz", name, False, f"refused what the oracle accepts: {detail.strip()[-300:]!r}")
    got = json.loads(result.stdout)["per_query"]
    for qid, values in expected.items():
        for metric, value in values.items():
            if qid not in got or abs(got[qid][metric] - value) > 1e-12:
                return Verdict("fuzz", name, False, f"{qid} {metric}: mbench {got.get(qid, {}).get(metric)} vs {value}")
    return Verdict("fuzz", name, True)


# -- hypothesis strategies ------------------------------------------------------------------------

NASTY_TOKENS = [
    "", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", "0x1p3", "1_0", "1,5", "+1", "-1", "-0", "1.5",
    "99999999999999999999", "٣", "\u00a0", "\x00", "\x0b", "\x1f", "d\u00a01", "\u2028", "é", "\U0001f600", "q1 q2",
    "x" * 300, "\ufeff", "\r", '"', "'",
]
_PLAIN_IDS = st.text(alphabet="abcdq0123456789:._-", min_size=1, max_size=6)
_IDS = st.one_of(_PLAIN_IDS, _PLAIN_IDS, _PLAIN_IDS, st.sampled_from(NASTY_TOKENS),
                 st.text(min_size=0, max_size=4))
_SCORES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-5, max_value=5).map(lambda x: f"{x:.3f}"),
    st.integers(-3, 3).map(str),
    st.sampled_from(["0.5", "0.5", "0.25", "1e-3", "5.", ".5", "1E2"]),
    st.sampled_from(NASTY_TOKENS),
)
_RANKS = st.one_of(st.integers(0, 50).map(str), st.integers(-3, 3).map(str), st.sampled_from(NASTY_TOKENS))
_GRADES = st.one_of(st.integers(0, 3).map(str), st.integers(0, 3).map(str), st.integers(-2, 2).map(str),
                    st.sampled_from(NASTY_TOKENS))


@st.composite
def _rendered(draw: st.DrawFn, rows: list[list[str]], tab_only: bool = False) -> bytes:
    """Rows joined by randomly chosen separators and line ends, maybe with a BOM, blank lines or gzip."""
    separator = "\t" if tab_only else draw(st.sampled_from([" ", " ", "\t", "  ", " \t"]))
    ending = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    lines = [separator.join(row) for row in rows]
    if draw(st.booleans()) and lines:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "   ", "\t"])))
    text = ending.join(lines) + (ending if draw(st.booleans()) else "")
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 9)) == 0:
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:position] + draw(st.sampled_from([b"\xe9", b"\xff", b"\x00", b"\xc3"])) + data[position:]
    return data


@st.composite
def trec_runs(draw: st.DrawFn) -> bytes:
    """TREC run files: mostly well-formed rows over a few queries, with nasty fields mixed in."""
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        qid = draw(st.sampled_from(["q1", "q2", "q3"])) if draw(st.integers(0, 4)) else draw(_IDS)
        docid = draw(st.sampled_from(["d1", "d2", "d3", "d4", "d5", "d6"])) if draw(st.integers(0, 4)) else draw(_IDS)
        row = [qid, "Q0", docid, draw(_RANKS), draw(_SCORES), "run"]
        if draw(st.integers(0, 14)) == 0:
            row = row[: draw(st.integers(0, 5))] if draw(st.booleans()) else row + ["extra"]
        rows.append(row)
    return draw(_rendered(rows))


@st.composite
def qrels_files(draw: st.DrawFn, fmt: str) -> bytes:
    """Qrels in ``fmt`` (trec, mbeir or beir) over the queries and documents of ``trec_runs``."""
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        qid = draw(st.sampled_from(["q1", "q2", "q3"])) if draw(st.integers(0, 4)) else draw(_IDS)
        docid = draw(st.sampled_from(["d1", "d2", "d3", "d4", "d5", "d6"])) if draw(st.integers(0, 4)) else draw(_IDS)
        grade = draw(_GRADES)
        row = {"trec": [qid, "0", docid, grade], "mbeir": [qid, "0", docid, grade, draw(_GRADES)],
               "beir": [qid, docid, grade]}[fmt]
        if draw(st.integers(0, 14)) == 0:
            row = row[: draw(st.integers(0, len(row) - 1))] if draw(st.booleans()) else row + ["extra"]
        rows.append(row)
    if fmt == "beir":
        header = ["query-id", "corpus-id", "score"] if draw(st.integers(0, 14)) else draw(
            st.sampled_from([["query_id", "corpus_id", "score"], ["query-id", "corpus-id"], []]))
        rows.insert(0, header)
    return draw(_rendered(rows, tab_only=fmt == "beir"))


CLEAN_RUN = b"".join(f"q{q} Q0 d{d} {r} {1 - r / 10:.2f} run\n".encode()
                     for q in (1, 2, 3) for r, d in enumerate((1, 2, 3, 4, 5, 6), start=1) if (q + d) % 4)
CLEAN_QRELS = {
    "trec": b"q1 0 d1 1\nq1 0 d2 0\nq1 0 d3 2\nq2 0 d2 1\nq2 0 d5 1\nq3 0 d6 1\n",
    "mbeir": b"q1 0 d1 1 0\nq1 0 d3 2 0\nq2 0 d2 1 0\nq2 0 d5 1 0\nq3 0 d6 1 0\n",
    "beir": b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\nq2\td2\t1\nq2\td5\t1\nq3\td6\t1\n",
}


# -- seeded mutations of the other files ----------------------------------------------------------

MUTATION_TOKENS = [b"\x00", b"\xe9", b"\xef\xbb\xbf", b"NaN", b"-1", b"1e400", b'"', b"{", b"]", b":", b"\t", b"\r\n",
                   b"../", b"/etc/passwd", b"!!python/object/apply:os.system [id]", b"x" * 5000, b"null", b"true",
                   b"- ", b"&a", b"*a", b"\n", b",", b"  ", b"#"]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random mutation of ``data`` and its description (flip, delete, insert, duplicate, truncate)."""
    kind = rng.choice(["flip", "delete", "insert", "duplicate-line", "drop-line", "swap-lines", "truncate"])
    if not data:
        return rng.choice(MUTATION_TOKENS), "insert into empty"
    position = rng.randrange(len(data))
    lines = data.split(b"\n")
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1:], f"flip@{position}"
    if kind == "delete":
        stop = min(len(data), position + rng.randint(1, 20))
        return data[:position] + data[stop:], f"delete@{position}:{stop}"
    if kind == "insert":
        token = rng.choice(MUTATION_TOKENS)
        return data[:position] + token + data[position:], f"insert@{position}:{token[:20]!r}"
    if kind == "truncate":
        return data[:position], f"truncate@{position}"
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if kind == "duplicate-line":
        lines.insert(i, lines[i])
    elif kind == "drop-line":
        del lines[i]
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines), f"{kind}@{i},{j}"


@dataclass(frozen=True)
class MutationTarget:
    """A clean file in a built case folder and the command that reads it."""

    name: str
    relative: str  # the file mutated, relative to the case folder
    build: Callable[[Path], list[str]]  # builds the clean case folder, returns the argv


def judge_mutation(target: MutationTarget, folder: Path, rng: random.Random, number: int) -> Verdict:
    """Build ``target`` in ``folder``, mutate its file once or a few times, run, and judge the ending."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = target.build(folder)
    path = folder / target.relative
    data, steps = path.read_bytes(), []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data, step = mutate(data, rng)
        steps.append(step)
    path.write_bytes(data)
    result = run_cli(argv)
    name = f"{target.name}#{number} ({', '.join(steps)})"
    if result.traceback is None and result.code == 0:
        return Verdict("fuzz", name, True)
    # A damaged file may surface in another one it refers to (a dropped pool row makes a qrels
    # line name an unknown did): the message must name the mutated file or another file of the case.
    why = judge_refusal(result, path.name)
    if why and not why.startswith(("traceback", "a traceback", "exit code", "no error")):
        why = judge_refusal(result, str(folder))
    return Verdict("fuzz", name, not why, why)


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed with a fixed header (mtime 0)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


# -- campaign drivers -------------------------------------------------------------------------------


def run_property(strategy: st.SearchStrategy, check: Callable[[object, int], Verdict], n: int, seed: int) -> list[Verdict]:
    """Judge ``n`` examples of ``strategy`` drawn by hypothesis from ``seed`` (no shrinking: every example counts)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    verdicts: list[Verdict] = []

    @seeded(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def judge(example: object) -> None:
        verdicts.append(check(example, len(verdicts)))

    judge()
    return verdicts


def fuzz_score(n: int, seed: int, folder: Path) -> list[Verdict]:
    """``n`` generated TREC runs against clean qrels, and ``n`` generated qrels of each format against a clean run."""
    verdicts = run_property(trec_runs(), lambda run, i: judge_score(
        run, CLEAN_QRELS["trec"], "trec", folder / f"run-{i}", f"trec run #{i}"), n, seed)
    for fmt in ("trec", "mbeir", "beir"):
        verdicts += run_property(qrels_files(fmt), lambda qrels, i, fmt=fmt: judge_score(
            CLEAN_RUN, qrels, fmt, folder / f"{fmt}-qrels-{i}", f"{fmt} qrels #{i}"), n, seed)
    return verdicts


def mutation_targets(material) -> list[MutationTarget]:
    """Every other file mbench reads, in a clean case folder, with the command that reads it."""
    from campaign import corpus

    def validate(kind: str) -> Callable[[Path], list[str]]:
        def build(folder: Path) -> list[str]:
            argv = corpus._data_case(kind, lambda root: None, material)(folder)
            task = argv[argv.index("--tasks") + 1]
            return ["validate", task, "--tasks-dir", str(folder / "tasks"), "--data-dir", str(folder / "data"),
                    "--cache-dir", str(material.cache), "--full"]

        return build

    def score(run: bytes, qrels: bytes, run_name: str, qrels_name: str) -> Callable[[Path], list[str]]:
        return corpus._score(run, qrels, run_name=run_name, qrels_name=qrels_name, metrics=None)

    circo_run, circo_ann = corpus._json(corpus.CIRCO_SUBMISSION), corpus._json(corpus.CIRCO_ANNOTATIONS)
    return [
        MutationTarget("task yaml", "tasks/t.yaml", corpus._validate_task(corpus.TASK_YAML, material)),
        MutationTarget("leaderboard yaml", "board.yaml", lambda f: ["table", str(corpus._write(
            f / "board.yaml", corpus.LEADERBOARD_YAML)), "--results-dir", str(f / "results")]),
        MutationTarget("sweep yaml", "sweep.yaml", lambda f: ["sweep", str(corpus._write(
            f / "sweep.yaml", corpus.SWEEP_YAML)), "--dry-run"]),
        MutationTarget("beir corpus", "data/towns/corpus.jsonl", validate("beir")),
        MutationTarget("beir queries", "data/towns/queries.jsonl", validate("beir")),
        MutationTarget("beir qrels", "data/towns/qrels/test.tsv", validate("beir")),
        MutationTarget("mbeir queries", f"data/mbeir/{corpus.MBEIR_QUERIES}", validate("mbeir")),
        MutationTarget("mbeir pool", f"data/mbeir/{corpus.MBEIR_POOL}", validate("mbeir")),
        MutationTarget("mbeir qrels", f"data/mbeir/{corpus.MBEIR_QRELS_FILE}", validate("mbeir")),
        MutationTarget("circo annotations", "data/circo/annotations/val.json", validate("circo")),
        MutationTarget("circo image info", "data/circo/image_info_unlabeled2017.json", validate("circo")),
        MutationTarget("image", f"data/mbeir/{corpus.BAD_IMAGE}", corpus._data_case("mbeir", lambda root: None, material)),
        MutationTarget("circo submission", "sub.json", score(circo_run, circo_ann, "sub.json", "val.json")),
        MutationTarget("circo annotations (score)", "val.json", score(circo_run, circo_ann, "sub.json", "val.json")),
    ]


def fuzz_mutations(n: int, seed: int, folder: Path, material) -> list[Verdict]:
    """``n`` seeded mutations spread over every target, plus mutated runs and qrels judged by the oracle."""
    rng = random.Random(seed)
    targets = mutation_targets(material)
    verdicts = []
    for number in range(n):
        slot = number % (len(targets) + 2)
        case = folder / f"mutation-{number}"
        if slot < len(targets):
            verdicts.append(judge_mutation(targets[slot], case, rng, number))
            continue
        if slot == len(targets):
            data, step = mutate(CLEAN_RUN, rng)
            verdicts.append(judge_score(data, CLEAN_QRELS["trec"], "trec", case, f"run mutation #{number} ({step})"))
        else:
            fmt = rng.choice(["trec", "mbeir", "beir"])
            data, step = mutate(CLEAN_QRELS[fmt], rng)
            verdicts.append(judge_score(CLEAN_RUN, data, fmt, case, f"{fmt} qrels mutation #{number} ({step})"))
    return verdicts
