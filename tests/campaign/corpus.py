"""The hand-listed nasty inputs: every file format mbench reads, each case run through the CLI.

A case writes its files into an empty folder and returns the `mbench` argv that reads them. A
*refused* case must end with exit code 2 and one message naming the file (``blamed``) and the
place (``where``: a line, JSON path or id); an *accepted* case is valid input in an awkward
spelling (BOM, CRLF, tabs, gzip, a long or unicode id) and must print exactly what its clean
twin prints. Nothing may end in a traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from campaign.outcome import CliResult, Verdict, judge_refusal, run_cli

SCORE_METRICS = "ndcg@10,recall@10,map_cut@10,mrr@10"

RUN = b"""q1 Q0 d3 1 0.9 r
q1 Q0 d1 2 0.8 r
q1 Q0 d4 3 0.7 r
q1 Q0 d2 4 0.6 r
q2 Q0 d5 1 0.95 r
q2 Q0 d1 2 0.5 r
q2 Q0 d2 3 0.25 r
"""
QRELS = b"""q1 0 d1 1
q1 0 d2 0
q1 0 d3 2
q2 0 d2 1
q2 0 d5 1
"""
MBEIR_QRELS = b"""q1 0 d1 1 0
q1 0 d3 2 0
q2 0 d2 1 0
q2 0 d5 1 0
"""
BEIR_QRELS = b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\nq2\td2\t1\nq2\td5\t1\n"
CIRCO_ANNOTATIONS = [
    {"id": 1, "reference_img_id": 10, "relative_caption": "is red", "shared_concept": "a car",
     "target_img_id": 11, "gt_img_ids": [11, 12], "semantic_aspects": []},
    {"id": 2, "reference_img_id": 20, "relative_caption": "has two", "shared_concept": "a dog",
     "target_img_id": 13, "gt_img_ids": [13], "semantic_aspects": []},
]
CIRCO_SUBMISSION = {"1": [11, 14, 12], "2": [15, 13]}


@dataclass(frozen=True)
class NastyCase:
    """One hostile input: how to write it and call mbench on it, and how it must end."""

    name: str
    build: Callable[[Path], list[str]]
    blamed: str | None = None  # refused: the file the message names; None: valid input
    where: str | None = None  # refused: a regex locating the problem in the message
    same_as: str | None = None  # accepted: the clean case whose output it must reproduce

    @property
    def family(self) -> str:
        """The input family (the part of the name before the slash)."""
        return self.name.split("/", 1)[0]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _replace_line(data: bytes, number: int, line: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[number - 1] = line
    return b"\n".join(lines)


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def _json(obj: object) -> bytes:
    return json.dumps(obj, indent=1).encode()


# -- mbench score: TREC runs, every qrels format, CIRCO submissions and annotations -------------------


def _score(run: bytes, qrels: bytes, *, run_name: str = "run.txt", qrels_name: str = "qrels.txt",
           metrics: str | None = SCORE_METRICS) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        run_path = _write(folder / run_name, run)
        qrels_path = _write(folder / qrels_name, qrels)
        argv = ["score", str(run_path), str(qrels_path), "--format", "json"]
        return argv + (["--metrics", metrics] if metrics else [])

    return build


def _run_cases() -> list[NastyCase]:
    line3 = r"run\.txt:3\b"

    def bad(name: str, line: bytes, where: str = line3) -> NastyCase:
        return NastyCase(f"trec-run/{name}", _score(_replace_line(RUN, 3, line), QRELS), "run.txt", where)

    def same(name: str, run: bytes, run_name: str = "run.txt") -> NastyCase:
        return NastyCase(f"trec-run/{name}", _score(run, QRELS, run_name=run_name), same_as="trec-run/clean")

    long_id = b"d" + b"x" * 100_000
    return [
        NastyCase("trec-run/clean", _score(RUN, QRELS)),
        bad("nan-score", b"q1 Q0 d4 3 NaN r"),
        bad("inf-score", b"q1 Q0 d4 3 inf r"),
        bad("minus-inf-score", b"q1 Q0 d4 3 -inf r"),
        bad("overflowing-score", b"q1 Q0 d4 3 1e400 r"),
        bad("negative-overflowing-score", b"q1 Q0 d4 3 -1e400 r"),
        bad("word-score", b"q1 Q0 d4 3 high r"),
        bad("hex-float-score", b"q1 Q0 d4 3 0x1p-3 r"),
        bad("comma-decimal-score", b"q1 Q0 d4 3 0,7 r"),
        bad("score-with-junk", b"q1 Q0 d4 3 0.7x r"),
        bad("arabic-digit-score", "q1 Q0 d4 3 \u0660.\u0667 r".encode()),
        bad("five-fields", b"q1 Q0 d4 3 0.7"),
        bad("seven-fields", b"q1 Q0 d4 3 0.7 r extra"),
        bad("one-field", b"q1"),
        bad("negative-rank", b"q1 Q0 d4 -3 0.7 r"),
        bad("fractional-rank", b"q1 Q0 d4 2.5 0.7 r"),
        bad("word-rank", b"q1 Q0 d4 third 0.7 r"),
        bad("overflowing-rank", b"q1 Q0 d4 99999999999999999999 0.7 r"),
        bad("swapped-rank-and-score", b"q1 Q0 d4 0.7 3 r"),
        bad("duplicate-pair", b"q1 Q0 d3 3 0.7 r"),
        bad("latin1-id", b"q1 Q0 d\xe94 3 0.7 r"),
        bad("nul-byte", b"q1 Q0 d4\x00 3 0.7 r"),
        bad("no-break-space-in-id", "q1 Q0 d\u00a04 3 0.7 r".encode()),
        bad("vertical-tab-in-id", b"q1 Q0 d\x0b4 3 0.7 r"),
        bad("line-separator-in-id", "q1 Q0 d\u20284 3 0.7 r".encode()),
        bad("binary-garbage", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        NastyCase("trec-run/truncated-gzip", _score(_gzip(RUN)[:-12], QRELS, run_name="run.txt.gz"), "run.txt.gz", None),
        NastyCase("trec-run/gzip-of-binary", _score(_gzip(b"\xff\xfe\x00garbage\x80\n"), QRELS, run_name="run.txt.gz"),
                  "run.txt.gz", r"run\.txt\.gz:1\b"),
        NastyCase("trec-run/empty-file", _score(b"", QRELS), "run.txt", None),
        NastyCase("trec-run/blank-lines-only", _score(b"\n  \n\t\n", QRELS), "run.txt", None),
        NastyCase("trec-run/no-query-in-qrels", _score(RUN.replace(b"q1", b"x1").replace(b"q2", b"x2"), QRELS),
                  "run.txt", None),
        NastyCase("trec-run/is-a-directory", lambda f: ["score", str((f / "run.txt").mkdir() or f / "run.txt"),
                                                        str(_write(f / "qrels.txt", QRELS))], "run.txt", None),
        NastyCase("trec-run/missing-file", lambda f: ["score", str(f / "run.txt"), str(_write(f / "qrels.txt", QRELS))],
                  "run.txt", None),
        same("utf8-bom", b"\xef\xbb\xbf" + RUN),
        same("crlf", RUN.replace(b"\n", b"\r\n")),
        same("tabs", RUN.replace(b" ", b"\t")),
        same("aligned-columns", RUN.replace(b" ", b"   ")),
        same("blank-lines", RUN.replace(b"\n", b"\n\n")),
        same("no-final-newline", RUN.rstrip(b"\n")),
        same("gzip", _gzip(RUN), run_name="run.txt.gz"),
        same("zero-based-ranks", b"".join(_replace_rank(line, str(i).encode()) for i, line in enumerate(RUN.splitlines(True)))),
        same("constant-ranks", b"".join(_replace_rank(line, b"1") for line in RUN.splitlines(True))),
        same("interleaved-queries", b"".join(RUN.splitlines(True)[i] for i in (0, 4, 1, 5, 2, 6, 3))),
        same("long-unjudged-id", RUN.replace(b"d4", long_id)),
        same("unicode-unjudged-id", RUN.replace(b"d4", "d\u00e9\u4e2d\U0001f600".encode())),
        same("unicode-tag", RUN.replace(b" r\n", " \u00fcber\n".encode())),
    ]


def _replace_rank(line: bytes, rank: bytes) -> bytes:
    fields = line.split(b" ")
    fields[3] = rank
    return b" ".join(fields)


def _qrels_cases() -> list[NastyCase]:
    def bad(name: str, line: bytes, number: int = 3) -> NastyCase:
        return NastyCase(f"trec-qrels/{name}", _score(RUN, _replace_line(QRELS, number, line)), "qrels.txt",
                         rf"qrels\.txt:{number}\b")

    def same(name: str, qrels: bytes, qrels_name: str = "qrels.txt") -> NastyCase:
        return NastyCase(f"trec-qrels/{name}", _score(RUN, qrels, qrels_name=qrels_name), same_as="trec-run/clean")

    def mbeir_bad(name: str, line: bytes) -> NastyCase:
        return NastyCase(f"mbeir-qrels/{name}", _score(RUN, _replace_line(MBEIR_QRELS, 3, line), qrels_name="q.mbeir"),
                         "q.mbeir", r"q\.mbeir:3\b")

    def beir_bad(name: str, line: bytes, number: int = 3) -> NastyCase:
        return NastyCase(f"beir-qrels/{name}", _score(RUN, _replace_line(BEIR_QRELS, number, line), qrels_name="q.tsv"),
                         "q.tsv", rf"q\.tsv:{number}\b")

    def beir_same(name: str, qrels: bytes) -> NastyCase:
        return NastyCase(f"beir-qrels/{name}", _score(RUN, qrels, qrels_name="q.tsv"), same_as="beir-qrels/clean")

    return [
        bad("fractional-grade", b"q1 0 d3 1.5"),
        bad("nan-grade", b"q1 0 d3 NaN"),
        bad("inf-grade", b"q1 0 d3 inf"),
        bad("word-grade", b"q1 0 d3 high"),
        bad("overflowing-grade", b"q1 0 d3 99999999999999999999"),
        bad("three-fields", b"q1 0 d3"),
        bad("five-fields-in-a-four-field-file", b"q1 0 d3 2 0"),
        bad("duplicate-judgment", b"q1 0 d1 2"),
        bad("latin1-id", b"q1 0 d\xe93 2"),
        bad("nul-byte", b"q1 0 d3\x00 2"),
        NastyCase("trec-qrels/empty-file", _score(RUN, b""), "qrels.txt", None),
        NastyCase("trec-qrels/blank-lines-only", _score(RUN, b"\n \n"), "qrels.txt", None),
        NastyCase("trec-qrels/truncated-gzip", _score(RUN, _gzip(QRELS)[:-10], qrels_name="qrels.txt.gz"), "qrels.txt.gz", None),
        NastyCase("trec-qrels/binary", _score(RUN, b"\x00\x01\x02\xff\xfe\n\x00"), "qrels.txt", None),
        same("utf8-bom", b"\xef\xbb\xbf" + QRELS),
        same("crlf", QRELS.replace(b"\n", b"\r\n")),
        same("tabs", QRELS.replace(b" ", b"\t")),
        same("blank-lines", QRELS.replace(b"\n", b"\n\n")),
        same("gzip", _gzip(QRELS), qrels_name="qrels.txt.gz"),
        same("no-final-newline", QRELS.rstrip(b"\n")),
        NastyCase("mbeir-qrels/clean", _score(RUN, MBEIR_QRELS, qrels_name="q.mbeir")),
        mbeir_bad("word-task-id", b"q2 0 d2 1 zero"),
        mbeir_bad("fractional-task-id", b"q2 0 d2 1 0.5"),
        mbeir_bad("four-fields", b"q2 0 d2 1"),
        mbeir_bad("six-fields", b"q2 0 d2 1 0 7"),
        mbeir_bad("word-grade", b"q2 0 d2 yes 0"),
        mbeir_bad("duplicate-judgment", b"q1 0 d1 1 0"),
        NastyCase("mbeir-qrels/crlf", _score(RUN, MBEIR_QRELS.replace(b"\n", b"\r\n"), qrels_name="q.mbeir"),
                  same_as="mbeir-qrels/clean"),
        NastyCase("beir-qrels/clean", _score(RUN, BEIR_QRELS, qrels_name="q.tsv")),
        beir_bad("underscore-header", b"query_id\tcorpus_id\tscore", 1),
        beir_bad("space-separated-header", b"query-id corpus-id score", 1),
        beir_bad("float-grade", b"q1\td3\t2.0"),
        beir_bad("word-grade", b"q1\td3\tyes"),
        beir_bad("empty-field", b"q1\t\t2"),
        beir_bad("four-fields", b"q1\td3\t2\t9"),
        beir_bad("duplicate-judgment", b"q1\td1\t2"),
        beir_bad("latin1-id", b"q1\td\xe93\t2"),
        beir_bad("space-inside-tab-row", b"q1 d3\t2"),
        beir_same("crlf", BEIR_QRELS.replace(b"\n", b"\r\n")),
        beir_same("utf8-bom", b"\xef\xbb\xbf" + BEIR_QRELS),
        beir_same("no-final-newline", BEIR_QRELS.rstrip(b"\n")),
    ]


def _circo_cases() -> list[NastyCase]:
    clean_run = _json(CIRCO_SUBMISSION)
    clean_ann = _json(CIRCO_ANNOTATIONS)

    def ann(name: str, entries: object | bytes, where: str | None) -> NastyCase:
        data = entries if isinstance(entries, bytes) else _json(entries)
        return NastyCase(f"circo-annotations/{name}", _score(clean_run, data, run_name="sub.json", qrels_name="val.json",
                                                             metrics=None), "val.json", where)

    def edited(index: int, **changes: object) -> list[dict]:
        entries = json.loads(clean_ann)
        entries[index].update(changes)
        return entries

    def without(index: int, key: str) -> list[dict]:
        entries = json.loads(clean_ann)
        del entries[index][key]
        return entries

    def sub(name: str, submission: object | bytes, where: str | None) -> NastyCase:
        data = submission if isinstance(submission, bytes) else _json(submission)
        return NastyCase(f"circo-submission/{name}", _score(data, clean_ann, run_name="sub.json", qrels_name="val.json",
                                                            metrics=None), "sub.json", where)

    def sub_same(name: str, data: bytes) -> NastyCase:
        return NastyCase(f"circo-submission/{name}", _score(data, clean_ann, run_name="sub.json", qrels_name="val.json",
                                                            metrics=None), same_as="circo-submission/clean")

    def ann_same(name: str, data: bytes) -> NastyCase:
        return NastyCase(f"circo-annotations/{name}", _score(clean_run, data, run_name="sub.json", qrels_name="val.json",
                                                             metrics=None), same_as="circo-submission/clean")

    second = r"(query 2|entry 1|\[1\])"
    return [
        NastyCase("circo-submission/clean", _score(clean_run, clean_ann, run_name="sub.json", qrels_name="val.json",
                                                   metrics=None)),
        sub("not-json", b'{"1": [11, 14, 12], "2": [15, 13]', None),
        sub("list-at-top", b'[[11, 14, 12]]', None),
        sub("ranking-not-a-list", {"1": [11, 14, 12], "2": 15}, r"'2'|\"2\""),
        sub("object-in-ranking", {"1": [11, 14, 12], "2": [15, {"id": 13}]}, r"'2'|\"2\""),
        sub("null-in-ranking", {"1": [11, 14, 12], "2": [15, None]}, r"'2'|\"2\""),
        sub("bool-in-ranking", {"1": [11, 14, 12], "2": [15, True]}, r"'2'|\"2\""),
        sub("float-id-in-ranking", {"1": [11, 14, 12], "2": [15, 13.0]}, r"'2'|\"2\""),
        sub("nan-in-ranking", b'{"1": [11, 14, 12], "2": [15, NaN]}', r"'2'|\"2\"|NaN"),
        sub("duplicate-image", {"1": [11, 14, 11], "2": [15, 13]}, r"'1'|\"1\""),
        sub("duplicate-query-key", b'{"1": [11, 14, 12], "2": [15, 13], "1": [12]}', r"'1'|\"1\""),
        sub("empty-object", b"{}", None),
        sub("unknown-queries", {"7": [11], "8": [13]}, None),
        sub("latin1", b'{"1": [11, 14, 12], "2": [15, 13], "\xe9": []}', None),
        sub_same("utf8-bom", b"\xef\xbb\xbf" + clean_run),
        sub_same("string-ids", _json({"1": ["11", "14", "12"], "2": ["15", "13"]})),
        sub_same("crlf", clean_run.replace(b"\n", b"\r\n")),
        ann("not-json", clean_ann[:-5], None),
        ann("object-at-top", {"queries": CIRCO_ANNOTATIONS}, None),
        ann("entry-not-object", [CIRCO_ANNOTATIONS[0], [2, 20]], second),
        ann("missing-id", without(1, "id"), second),
        ann("null-id", edited(1, id=None), second),
        ann("bool-id", edited(1, id=True), second),
        ann("fractional-id", edited(1, id=2.5), second),
        ann("list-id", edited(1, id=[2]), second),
        ann("duplicate-id", edited(1, id=1), r"query 1|\[1\]|entry 1"),
        ann("gt-not-a-list", edited(1, gt_img_ids="13"), second),
        ann("object-in-gt", edited(1, gt_img_ids=[{"id": 13}]), second),
        ann("null-in-gt", edited(1, gt_img_ids=[13, None]), second),
        ann("bool-in-gt", edited(1, gt_img_ids=[13, True]), second),
        ann("float-in-gt", edited(1, gt_img_ids=[13.0]), second),
        ann("duplicate-gt", edited(1, gt_img_ids=[13, 13]), second),
        ann("missing-target", without(1, "target_img_id"), second),
        ann("null-target", edited(1, target_img_id=None), second),
        ann("float-target", edited(1, target_img_id=13.5), second),
        ann("duplicate-key-in-entry", clean_ann.replace(b'"id": 2,', b'"id": 2, "id": 3,'), r"query 2|query 3|\[1\]|entry 1"),
        ann("nan-in-gt", clean_ann.replace(b"[\n   13\n  ]", b"[13, NaN]"), second),
        ann_same("utf8-bom", b"\xef\xbb\xbf" + clean_ann),
        ann_same("string-ids", _json([{**e, "gt_img_ids": [str(i) for i in e["gt_img_ids"]],
                                       "target_img_id": str(e["target_img_id"])} for e in CIRCO_ANNOTATIONS])),
    ]


# -- YAML: task, leaderboard and sweep specs ---------------------------------------------------------

TASK_YAML = """\
name: case.towns
adapter: beir
data_folder: towns
split: test
query_modality: text
cand_modality: text
files:
  queries: queries.jsonl
  qrels: qrels/test.tsv
pools:
  local:
    file: corpus.jsonl
metrics: [ndcg@10, recall@10]
main_metric: ndcg@10
"""

LEADERBOARD_YAML = """\
name: case-board
title: A leaderboard of the campaign
pool: local
rows:
  - task: mini.beir.towns
    metric: ndcg@10
runs:
  - name: hash
    model: hash-embed
references:
  - name: paper
    source: {paper: A paper, table: "1", column: ours}
    values: {mini.beir.towns: 41.5}
"""

SWEEP_YAML = """\
models:
  - model: hash-embed
    model_args: {dim: 32}
tasks: [mini.beir.towns]
pools: [local]
instruction_policies: [first, none]
progress: false
"""


@dataclass(frozen=True)
class Material:
    """Clean data the data-folder cases copy: the generated mini benchmark's task folders."""

    mini: Path
    cache: Path


def _towns(folder: Path, material: Material) -> Path:
    """A copy of the mini BEIR towns collection under ``folder/data/towns``."""
    target = folder / "data" / "towns"
    shutil.copytree(material.mini / "beir" / "towns", target)
    return target


def _validate_task(yaml_text: str | bytes, material: Material, *, edit: Callable[[Path], None] | None = None,
                   file_name: str = "t.yaml") -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        _towns(folder, material)
        _write(folder / "tasks" / file_name, yaml_text)
        if edit is not None:
            edit(folder)
        return ["validate", "case.towns", "--tasks-dir", str(folder / "tasks"), "--data-dir", str(folder / "data"),
                "--cache-dir", str(material.cache)]

    return build


def _yaml_cases(material: Material) -> list[NastyCase]:
    def task(name: str, text: str | bytes, where: str | None = None, *, edit: Callable[[Path], None] | None = None,
             blamed: str = "t.yaml") -> NastyCase:
        return NastyCase(f"task-yaml/{name}", _validate_task(text, material, edit=edit), blamed, where)

    def task_same(name: str, text: str | bytes) -> NastyCase:
        return NastyCase(f"task-yaml/{name}", _validate_task(text, material), same_as="task-yaml/clean")

    def symlink_out(folder: Path) -> None:
        outside = _write(folder / "outside" / "corpus.jsonl", (folder / "data/towns/corpus.jsonl").read_bytes())
        (folder / "data/towns/corpus.jsonl").unlink()
        (folder / "data/towns/corpus.jsonl").symlink_to(outside)

    def board(name: str, text: str | bytes, where: str | None = None) -> NastyCase:
        def build(folder: Path) -> list[str]:
            path = _write(folder / "board.yaml", text)
            return ["table", str(path), "--results-dir", str(folder / "results")]

        return NastyCase(f"leaderboard-yaml/{name}", build, "board.yaml" if where != "-" else None,
                         None if where == "-" else where, same_as="leaderboard-yaml/clean" if where == "-" else None)

    def sweep(name: str, text: str | bytes, where: str | None = None, dry_run: bool = True) -> NastyCase:
        def build(folder: Path) -> list[str]:
            path = _write(folder / "sweep.yaml", text)
            return ["sweep", str(path), *(["--dry-run"] if dry_run else [])]

        return NastyCase(f"sweep-yaml/{name}", build, "sweep.yaml" if where != "-" else None,
                         None if where == "-" else where, same_as="sweep-yaml/clean" if where == "-" else None)

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    return [
        NastyCase("task-yaml/clean", _validate_task(TASK_YAML, material)),
        task("tab-indentation", TASK_YAML.replace("  queries", "\tqueries"), r"t\.yaml:\d+"),
        task("unclosed-quote", TASK_YAML.replace("split: test", 'split: "test'), r"t\.yaml:\d+"),
        task("duplicate-key", TASK_YAML + "split: train\n", r"split"),
        task("duplicate-nested-key", TASK_YAML.replace("  qrels: qrels/test.tsv", "  qrels: qrels/test.tsv\n  qrels: x.tsv"),
             r"qrels"),
        task("unknown-key", TASK_YAML + "metricz: [ndcg@10]\n", r"metricz"),
        task("python-tag", TASK_YAML + "description: !!python/object/apply:os.system [echo hi]\n", r"t\.yaml"),
        task("metrics-not-a-list", TASK_YAML.replace("[ndcg@10, recall@10]", "5"), r"metrics"),
        task("unknown-metric", TASK_YAML.replace("recall@10]", "recal@10]"), r"metrics"),
        task("zero-cutoff-metric", TASK_YAML.replace("recall@10]", "recall@0]"), r"metrics"),
        task("negative-depth", TASK_YAML + "depth: -1\n", r"depth"),
        task("infinite-depth", TASK_YAML + "depth: .inf\n", r"depth"),
        task("name-with-slash", TASK_YAML.replace("name: case.towns", "name: case/towns"), r"name"),
        task("name-climbing-up", TASK_YAML.replace("name: case.towns", "name: ../../case.towns"), r"name"),
        task("data-folder-climbing-up", TASK_YAML.replace("data_folder: towns", "data_folder: ../../towns"), r"data_folder"),
        task("absolute-data-folder", TASK_YAML.replace("data_folder: towns", "data_folder: /etc"), r"data_folder"),
        task("file-climbing-up", TASK_YAML.replace("queries: queries.jsonl", "queries: ../../outside/queries.jsonl"),
             r"files\.queries|queries"),
        task("absolute-pool-file", TASK_YAML.replace("file: corpus.jsonl", "file: /etc/passwd"), r"pools\.local\.file"),
        task("symlink-out-of-the-data-root", TASK_YAML, r"corpus\.jsonl", edit=symlink_out, blamed="corpus.jsonl"),
        task("pool-name-climbing-up", TASK_YAML.replace("  local:", "  ../../x:"), r"pools"),
        task("missing-include", "include: _nowhere.yaml\n" + TASK_YAML, r"include"),
        task("latin1", TASK_YAML.encode() + b"description: caf\xe9\n", r"t\.yaml"),
        task("nul-byte", TASK_YAML.encode() + b"description: a\x00b\n", r"t\.yaml"),
        task("empty-file", "", r"t\.yaml"),
        task("list-at-top", "- name: case.towns\n", r"t\.yaml"),
        task("integer-key", TASK_YAML + "1: one\n", r"1"),
        task("alias-bomb", TASK_YAML + "description: x\n" + bomb.replace("a:", "zz_a:", 1), r"t\.yaml"),
        task_same("utf8-bom", "\ufeff" + TASK_YAML),
        task_same("crlf", TASK_YAML.replace("\n", "\r\n")),
        NastyCase("leaderboard-yaml/clean", lambda f: ["table", str(_write(f / "board.yaml", LEADERBOARD_YAML)),
                                                        "--results-dir", str(f / "results")]),
        board("tab-indentation", LEADERBOARD_YAML.replace("  - task", "\t- task"), r"board\.yaml:\d+"),
        board("duplicate-key", LEADERBOARD_YAML + "title: Another\n", r"title"),
        board("unknown-key", LEADERBOARD_YAML + "colour: red\n", r"colour"),
        board("python-tag", LEADERBOARD_YAML + "description: !!python/name:os.system\n", r"board\.yaml"),
        board("nan-reference", LEADERBOARD_YAML.replace("41.5", ".nan"), r"references\.0\.values"),
        board("inf-reference", LEADERBOARD_YAML.replace("41.5", ".inf"), r"references\.0\.values"),
        board("word-reference", LEADERBOARD_YAML.replace("41.5", "high"), r"references\.0\.values"),
        board("unknown-task", LEADERBOARD_YAML.replace("task: mini.beir.towns", "task: mini.beir.town"), r"mini\.beir\.town"),
        board("no-rows", LEADERBOARD_YAML.replace("rows:\n  - task: mini.beir.towns\n    metric: ndcg@10\n", "rows: []\n"),
              r"rows"),
        board("absolute-results-dir", LEADERBOARD_YAML.replace("model: hash-embed", "model: hash-embed\n    results_dir: /etc"),
              r"results_dir"),
        board("results-dir-climbing-up", LEADERBOARD_YAML.replace("model: hash-embed",
                                                                  "model: hash-embed\n    results_dir: ../../.."),
              r"results_dir"),
        board("latin1", LEADERBOARD_YAML.encode() + b"description: caf\xe9\n", r"board\.yaml"),
        board("empty-file", "", r"board\.yaml"),
        board("list-at-top", "- 1\n", r"board\.yaml"),
        board("utf8-bom", "\ufeff" + LEADERBOARD_YAML, "-"),
        board("crlf", LEADERBOARD_YAML.replace("\n", "\r\n"), "-"),
        NastyCase("sweep-yaml/clean", lambda f: ["sweep", str(_write(f / "sweep.yaml", SWEEP_YAML)), "--dry-run"]),
        sweep("tab-indentation", SWEEP_YAML.replace("  - model", "\t- model"), r"sweep\.yaml:\d+"),
        sweep("duplicate-key", SWEEP_YAML + "progress: true\n", r"progress"),
        sweep("unknown-key", SWEEP_YAML + "gpus: 8\n", r"gpus"),
        sweep("python-tag", SWEEP_YAML + "data_dir: !!python/object/apply:os.getcwd []\n", r"sweep\.yaml"),
        sweep("no-models", SWEEP_YAML.replace("models:\n  - model: hash-embed\n    model_args: {dim: 32}\n", "models: []\n"),
              r"models"),
        sweep("word-seed", SWEEP_YAML + "seeds: [one]\n", r"seeds"),
        sweep("zero-batch-size", SWEEP_YAML + "batch_size: 0\n", r"batch_size"),
        sweep("nested-model-arg", SWEEP_YAML.replace("{dim: 32}", "{dim: {x: 1}}"), r"model_args"),
        sweep("nan-model-arg", SWEEP_YAML.replace("{dim: 32}", "{dim: .nan}"), r"model_args"),
        sweep("unknown-task", SWEEP_YAML.replace("[mini.beir.towns]", "[mini.beir.town]"), r"mini\.beir\.town"),
        sweep("pool-climbing-up", SWEEP_YAML.replace("pools: [local]", "pools: [../../x]"), r"pools"),
        sweep("remote-code-without-the-flag", SWEEP_YAML.replace("model_args: {dim: 32}",
                                                                 "model_args: {dim: 32}\n    trust_remote_code: true"),
              r"trust.remote.code", dry_run=False),
        sweep("remote-code-as-a-model-arg", SWEEP_YAML.replace("{dim: 32}", "{dim: 32, trust_remote_code: true}"),
              r"trust_remote_code"),
        sweep("latin1", SWEEP_YAML.encode() + b"data_dir: caf\xe9\n", r"sweep\.yaml"),
        sweep("empty-file", "", r"sweep\.yaml"),
        sweep("utf8-bom", "\ufeff" + SWEEP_YAML, "-"),
        sweep("crlf", SWEEP_YAML.replace("\n", "\r\n"), "-"),
    ]


# -- data folders read by `mbench run`: JSONL rows, qrels, annotations, images ------------------------

BEIR_RUN_TASK = TASK_YAML
MBEIR_TASK = """\
name: case.mscoco
adapter: mbeir
data_folder: mbeir
split: test
query_modality: text
cand_modality: image
files:
  queries: query/test/mbeir_mscoco_task0_test.jsonl
  qrels: qrels/test/mbeir_mscoco_task0_test_qrels.txt
pools:
  local:
    file: cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl
metrics: [hit@1, hit@5]
main_metric: hit@5
"""
CIRCO_TASK = """\
name: case.circo
adapter: circo
data_folder: circo
split: val
query_modality: image,text
cand_modality: image
files:
  annotations: annotations/val.json
  images: unlabeled2017
  image_info: image_info_unlabeled2017.json
pools:
  local:
    file: image_info_unlabeled2017.json
depth: 50
metrics: [map@5, map@50]
main_metric: map@5
"""
MBEIR_QUERIES = "query/test/mbeir_mscoco_task0_test.jsonl"
MBEIR_POOL = "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"
MBEIR_QRELS_FILE = "qrels/test/mbeir_mscoco_task0_test_qrels.txt"
BAD_IMAGE = "mbeir_images/mscoco_images/000003.jpg"  # candidate 9:3, line 3 of the pool


def _run_argv(folder: Path, material: Material, task: str, *extra: str) -> list[str]:
    return ["run", "--model", "hash-embed", "--tasks", task, "--tasks-dir", str(folder / "tasks"), "--data-dir",
            str(folder / "data"), "--results-dir", str(folder / "results"), "--cache-dir", str(material.cache),
            "--no-progress", "--device", "cpu", *extra]


def _mbeir_copy(folder: Path, material: Material) -> Path:
    """The mscoco task-0 files of the mini M-BEIR folder (and its images) under ``folder/data/mbeir``."""
    source, target = material.mini / "mbeir", folder / "data" / "mbeir"
    for relative in (MBEIR_QUERIES, MBEIR_POOL, MBEIR_QRELS_FILE):
        _write(target / relative, (source / relative).read_bytes())
    shutil.copytree(source / "mbeir_images" / "mscoco_images", target / "mbeir_images" / "mscoco_images")
    return target


def _data_case(kind: str, edit: Callable[[Path], None], material: Material, *extra: str) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        if kind == "beir":
            _towns(folder, material)
            _write(folder / "tasks" / "t.yaml", BEIR_RUN_TASK)
            task = "case.towns"
        elif kind == "mbeir":
            _mbeir_copy(folder, material)
            _write(folder / "tasks" / "t.yaml", MBEIR_TASK)
            task = "case.mscoco"
        else:
            shutil.copytree(material.mini / "circo", folder / "data" / "circo")
            _write(folder / "tasks" / "t.yaml", CIRCO_TASK)
            task = "case.circo"
        edit(folder / "data" / {"beir": "towns", "mbeir": "mbeir", "circo": "circo"}[kind])
        return _run_argv(folder, material, task, *extra)

    return build


def _edit_line(relative: str, number: int, make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        lines = path.read_bytes().split(b"\n")
        lines[number - 1] = make(lines[number - 1])
        path.write_bytes(b"\n".join(lines))

    return edit


def _edit_file(relative: str, make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        path.write_bytes(make(path.read_bytes()))

    return edit


def _set_key(key: str, value: object) -> Callable[[bytes], bytes]:
    def make(line: bytes) -> bytes:
        row = json.loads(line)
        row[key] = value
        return json.dumps(row).encode()

    return make


def _drop_key(key: str) -> Callable[[bytes], bytes]:
    def make(line: bytes) -> bytes:
        row = json.loads(line)
        del row[key]
        return json.dumps(row).encode()

    return make


def _png(mode: str, size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode in ("L", "I;16", "P") else (200, 100, 50, 255)[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def _cmyk_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (32, 32), (10, 200, 30, 0)).save(buffer, "JPEG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A PNG whose header claims 60000 x 60000 pixels (3.6 gigapixels): a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _data_cases(material: Material) -> list[NastyCase]:
    corpus_line2 = r"corpus\.jsonl:2\b"
    pool3 = r"mbeir_mscoco_task0_test_cand_pool\.jsonl:3\b"
    queries2 = r"mbeir_mscoco_task0_test\.jsonl:2\b"
    image_id = r"9:3"

    def beir(name: str, edit: Callable[[Path], None], blamed: str | None = "corpus.jsonl",
             where: str | None = corpus_line2) -> NastyCase:
        return NastyCase(f"beir-data/{name}", _data_case("beir", edit, material), blamed, where,
                         same_as="beir-data/clean" if blamed is None else None)

    def mbeir(name: str, edit: Callable[[Path], None], blamed: str | None, where: str | None, *extra: str) -> NastyCase:
        return NastyCase(f"mbeir-data/{name}", _data_case("mbeir", edit, material, *extra), blamed, where)

    def image(name: str, data: bytes | Callable[[bytes], bytes] | None, refused: bool = True) -> NastyCase:
        def edit(root: Path) -> None:
            path = root / BAD_IMAGE
            clean = path.read_bytes()
            path.unlink()
            if data is None:
                path.mkdir()
            else:
                path.write_bytes(data(clean) if callable(data) else data)

        return NastyCase(f"image/{name}", _data_case("mbeir", edit, material), "000003.jpg" if refused else None,
                         image_id if refused else None)

    def circo(name: str, edit: Callable[[Path], None], blamed: str, where: str | None) -> NastyCase:
        return NastyCase(f"circo-data/{name}", _data_case("circo", edit, material), blamed, where)

    def first_annotation(**changes: object) -> Callable[[Path], None]:
        def edit(root: Path) -> None:
            path = root / "annotations" / "val.json"
            entries = json.loads(path.read_text())
            entries[0].update(changes)
            path.write_text(json.dumps(entries))

        return edit

    return [
        NastyCase("beir-data/clean", _data_case("beir", lambda root: None, material)),
        beir("malformed-json-line", _edit_line("corpus.jsonl", 2, lambda line: line[:-1])),
        beir("array-line", _edit_line("corpus.jsonl", 2, lambda line: b"[1, 2]")),
        beir("missing-id", _edit_line("corpus.jsonl", 2, _drop_key("_id"))),
        beir("null-id", _edit_line("corpus.jsonl", 2, _set_key("_id", None))),
        beir("empty-id", _edit_line("corpus.jsonl", 2, _set_key("_id", ""))),
        beir("whitespace-id", _edit_line("corpus.jsonl", 2, _set_key("_id", "doc 2"))),
        beir("bool-id", _edit_line("corpus.jsonl", 2, _set_key("_id", True))),
        beir("fractional-id", _edit_line("corpus.jsonl", 2, _set_key("_id", 2.5))),
        beir("object-id", _edit_line("corpus.jsonl", 2, _set_key("_id", {"a": 1}))),
        beir("duplicate-id", _edit_line("corpus.jsonl", 2, lambda line: _set_key("_id", json.loads(
            (material.mini / "beir/towns/corpus.jsonl").read_bytes().split(b"\n")[0])["_id"])(line))),
        beir("latin1-text", _edit_line("corpus.jsonl", 2, lambda line: line.replace(b'"text": "', b'"text": "caf\xe9 '))),
        beir("nul-byte", _edit_line("corpus.jsonl", 2, lambda line: line.replace(b'"text": "', b'"text": "\x00'))),
        beir("text-as-object", _edit_line("corpus.jsonl", 2, _set_key("text", {"en": "x"}))),
        beir("truncated-last-line", _edit_file("corpus.jsonl", lambda data: data.rstrip(b"\n")[:-7]), "corpus.jsonl",
             r"corpus\.jsonl:\d+"),
        beir("empty-corpus", _edit_file("corpus.jsonl", lambda data: b""), "corpus.jsonl", None),
        beir("queries-malformed-line", _edit_line("queries.jsonl", 2, lambda line: line + b"}"), "queries.jsonl",
             r"queries\.jsonl:2\b"),
        beir("qrels-unknown-doc", _edit_line("qrels/test.tsv", 2, lambda line: line.split(b"\t")[0] + b"\tnowhere\t1"),
             "test.tsv", r"test\.tsv:2\b"),
        beir("qrels-float-grade", _edit_line("qrels/test.tsv", 2, lambda line: line.rsplit(b"\t", 1)[0] + b"\t1.5"),
             "test.tsv", r"test\.tsv:2\b"),
        beir("qrels-missing", lambda root: (root / "qrels" / "test.tsv").unlink(), "test.tsv", None),
        beir("qrels-latin1-id", _edit_line("qrels/test.tsv", 2, lambda line: line.replace(b"\t", b"\xe9\t", 1)),
             "test.tsv", r"test\.tsv:2\b"),
        beir("qrels-blank-line-before-a-bad-one", _edit_file("qrels/test.tsv", lambda data: data.replace(
            b"\n", b"\n\n", 1).replace(b"\t1\n", b"\tone\n", 1)), "test.tsv", r"test\.tsv:3\b"),
        beir("qrels-utf8-bom", _edit_file("qrels/test.tsv", lambda data: b"\xef\xbb\xbf" + data), None, None),
        beir("utf8-bom", _edit_file("corpus.jsonl", lambda data: b"\xef\xbb\xbf" + data), None, None),
        beir("crlf", _edit_file("corpus.jsonl", lambda data: data.replace(b"\n", b"\r\n")), None, None),
        beir("blank-lines", _edit_file("corpus.jsonl", lambda data: data.replace(b"\n", b"\n\n")), None, None),
        mbeir("query-without-qid", _edit_line(MBEIR_QUERIES, 2, _drop_key("qid")), "mbeir_mscoco_task0_test.jsonl", queries2),
        mbeir("integer-qid", _edit_line(MBEIR_QUERIES, 2, _set_key("qid", 92)), "mbeir_mscoco_task0_test.jsonl", queries2),
        mbeir("empty-did", _edit_line(MBEIR_POOL, 3, _set_key("did", "")), "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("did-with-space", _edit_line(MBEIR_POOL, 3, _set_key("did", "9: 3")),
              "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("duplicate-did", _edit_line(MBEIR_POOL, 3, _set_key("did", "9:1")),
              "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("unknown-modality", _edit_line(MBEIR_POOL, 3, _set_key("modality", "video")),
              "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("string-task-id", _edit_line(MBEIR_QUERIES, 2, _set_key("task_id", "zero")),
              "mbeir_mscoco_task0_test.jsonl", queries2),
        mbeir("image-path-climbing-up", _edit_line(MBEIR_POOL, 3, _set_key("img_path", "../../../../etc/hostname")),
              "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("absolute-image-path", _edit_line(MBEIR_POOL, 3, _set_key("img_path", "/etc/hostname")),
              "mbeir_mscoco_task0_test_cand_pool.jsonl", pool3),
        mbeir("missing-image-file", _edit_line(MBEIR_POOL, 3, _set_key("img_path", "mbeir_images/mscoco_images/nope.jpg")),
              "nope.jpg", image_id),
        mbeir("latin1-query-text", _edit_line(MBEIR_QUERIES, 2, lambda line: line.replace(b'"query_txt": "', b'"query_txt": "caf\xe9 ')),
              "mbeir_mscoco_task0_test.jsonl", queries2),
        mbeir("qrels-word-grade", _edit_line(MBEIR_QRELS_FILE, 2, lambda line: line.replace(b" 1 0", b" one 0")),
              "mbeir_mscoco_task0_test_qrels.txt", r"qrels\.txt:2\b"),
        mbeir("qrels-short-line", _edit_line(MBEIR_QRELS_FILE, 2, lambda line: line.rsplit(b" ", 1)[0]),
              "mbeir_mscoco_task0_test_qrels.txt", r"qrels\.txt:2\b"),
        image("zero-bytes", b""),
        image("truncated-jpeg", lambda jpeg: jpeg[: len(jpeg) // 2]),
        image("text-file", b"this is not an image\n"),
        image("html-error-page", b"<html><body>404 Not Found</body></html>"),
        image("decompression-bomb", _bomb_png()),
        image("a-directory", None),
        image("png-with-jpg-extension", _png("RGB", (32, 32)), refused=False),
        image("cmyk-jpeg", _cmyk_jpeg(), refused=False),
        image("sixteen-bit-png", _png("I;16", (32, 32)), refused=False),
        image("alpha-png", _png("RGBA", (32, 32)), refused=False),
        image("palette-png", _png("P", (32, 32)), refused=False),
        image("grey-png", _png("L", (32, 32)), refused=False),
        circo("fractional-reference-id", first_annotation(reference_img_id=1.5), "val.json", r"query|entry|\[0\]"),
        circo("bool-reference-id", first_annotation(reference_img_id=True), "val.json", r"query|entry|\[0\]"),
        circo("word-reference-id", first_annotation(reference_img_id="abc"), "val.json", r"query|entry|\[0\]"),
        circo("null-caption", first_annotation(relative_caption=None), "val.json", r"query|entry|\[0\]"),
        circo("broken-image-info", _edit_file("image_info_unlabeled2017.json", lambda data: data[:-3]),
              "image_info_unlabeled2017.json", None),
        circo("image-info-without-images", _edit_file("image_info_unlabeled2017.json", lambda data: b'{"info": {}}'),
              "image_info_unlabeled2017.json", None),
        circo("annotations-not-json", _edit_file("annotations/val.json", lambda data: data[:-2]), "val.json", None),
    ]


def nasty_cases(material: Material) -> list[NastyCase]:
    """Every case of the hand-listed corpus, clean twins first within each family."""
    return _run_cases() + _qrels_cases() + _circo_cases() + _yaml_cases(material) + _data_cases(material)


def material_in(cache: Path) -> Material:
    """The clean material under ``cache`` (the mini benchmark is generated there once)."""
    from mbench.data.mini import ensure_mini

    return Material(mini=ensure_mini(cache / "mbench"), cache=cache / "mbench")


def run_case(case: NastyCase, folder: Path, clean_output: dict[str, CliResult]) -> Verdict:
    """Build ``case`` in the empty ``folder``, run it through the CLI and judge how it ended."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = case.build(folder)
    result = run_cli(argv)
    if case.blamed is not None:
        why = judge_refusal(result, case.blamed, case.where)
        return Verdict("input", case.name, not why, why)
    if result.traceback is not None:
        return Verdict("input", case.name, False, "traceback: " + result.traceback.strip().splitlines()[-1])
    if result.code != 0:
        return Verdict("input", case.name, False, f"valid input refused (exit {result.code}): {result.stderr.strip()[-400:]!r}")
    if case.same_as is None:
        clean_output[case.name] = result
        return Verdict("input", case.name, True)
    twin = clean_output.get(case.same_as)
    if twin is None:
        return Verdict("input", case.name, False, f"its clean twin {case.same_as} did not run first")
    if _comparable(result.stdout, folder) != _comparable(twin.stdout, None):
        return Verdict("input", case.name, False, f"output differs from {case.same_as}: {result.stdout[-300:]!r}")
    return Verdict("input", case.name, True)


def _comparable(stdout: str, folder: Path | None) -> str:
    """Output with the case folder's path taken out, so twins built in different folders compare."""
    import re

    return re.sub(r"/\S*/(case|twin)-[^/\s]+", "<case>", stdout)


def run_corpus(root: Path, cases: list[NastyCase] | None = None) -> list[Verdict]:
    """Run the corpus (or ``cases`` of it, clean twins included) in folders under ``root``."""
    from campaign.outcome import environment

    material = material_in(root)
    chosen = cases if cases is not None else nasty_cases(material)
    clean: dict[str, CliResult] = {}
    verdicts = []
    with environment(HF_HUB_OFFLINE="1", MBENCH_CACHE=str(material.cache), MBENCH_FAULT=None):
        for number, case in enumerate(chosen):
            verdicts.append(run_case(case, root / f"case-{number}", clean))
    return verdicts
