"""mbench results as mteb result files, and mteb result files as reference numbers.

Export writes mteb's layout, ``<model>/<revision>/<TaskName>.json`` (model name with ``/`` as
``__``, as mteb's ResultCache names folders) plus the ``model_meta.json`` mteb reads a folder's
model from, each task file an mteb ``TaskResult`` with the scores under mteb's keys. Import reads
a folder of such files through mteb's own loader (``TaskResult.from_disk``, which also converts
files written by mteb 1.x).

Metric keys: mbench's ``ndcg@k``, ``map_cut@k``, ``recall@k``, ``precision@k``, ``mrr@k`` and
``hit@k`` are mteb's ``ndcg_at_k``, ``map_at_k``, ``recall_at_k``, ``precision_at_k``,
``mrr_at_k`` and ``hit_rate_at_k`` (same definitions; checked against mteb's evaluator by the
tests). mbench's ``map@k`` (CIRCO's, normalised by min(relevant, k)) has no mteb key and is never
written as ``map_at_k``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_with
from mbench.metrics import parse_metric

if TYPE_CHECKING:
    from mbench.results import ResultRecord

MTEB_METRIC_KEYS = {
    "ndcg": "ndcg_at_{k}",
    "map_cut": "map_at_{k}",
    "recall": "recall_at_{k}",
    "precision": "precision_at_{k}",
    "mrr": "mrr_at_{k}",
    "hit": "hit_rate_at_{k}",
}
MODEL_META_FILE = "model_meta.json"
# mteb requires "organisation/name"; mbench models named without one are filed under this organisation.
DEFAULT_ORGANISATION = "mbench"


def mteb_metric_key(metric: str) -> str | None:
    """mteb's score key for an mbench metric (``ndcg@10`` -> ``ndcg_at_10``), None when mteb has no such metric."""
    parsed = parse_metric(metric)
    template = MTEB_METRIC_KEYS.get(parsed.family)
    return None if template is None else template.format(k=parsed.k)


# ---------------------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class Exported:
    """One result written as an mteb task file."""

    source: Path
    path: Path
    task_name: str
    main_score_key: str
    main_score: float


@dataclass(frozen=True)
class Skipped:
    """One result not exported, and why."""

    source: Path
    reason: str


def export_identity(record: ResultRecord) -> tuple[str, str]:
    """(model name, revision) a result is filed under: mteb's name of an mteb-family model, else the recorded name."""
    model = record.model
    name = str((model.get("output_args") or {}).get("mteb_model") or record.model_name)
    if "/" not in name:
        name = f"{DEFAULT_ORGANISATION}/{name}"
    return name, str(model.get("revision") or "no_revision_available")


def model_folder(name: str) -> str:
    """mteb's folder name of a model (``org/name`` -> ``org__name``)."""
    return name.replace("/", "__").replace(" ", "_")


def revision_folder(revision: str) -> str:
    """The folder of a revision (``sha256:<hex>`` digests of local checkpoints as ``sha256-<hex>``)."""
    return revision.replace(":", "-").replace("/", "-")


def _why_not_exported(record: ResultRecord) -> str | None:
    if record.kind != "retrieval":
        return "a rerank result (mteb result files describe one model's retrieval)"
    if record.partial:
        return f"a partial result ({record.limit_variant}: mbench run --limit scores a sample of the queries)"
    if record.skipped_items:
        return "items were left out by --skip-bad-items (mteb's scores cover the whole task)"
    if record.pool != "local":
        return f"pool {record.pool!r} (an mteb task searches its own corpus, mbench's local pool)"
    if record.model.get("uses_instructions") and (record.instruction_policy or "first") != "first":
        return (f"instruction policy {record.instruction_policy!r} (mteb gives a model its task's "
                "instruction, mbench's default policy `first`)")
    if not record.metrics:
        return "no metrics (an unscored task)"
    return None


def plan_export(
    found: Iterable[Any], out: Path, tasks_dirs: Sequence[str | Path] = ()
) -> tuple[list[_Planned], list[Skipped]]:
    """Which results become which mteb files: (planned writes, skipped results); two results for one file is an error."""
    from mbench.models.builtin.mteb_encoder import mteb_version

    mteb_version()
    from mteb import TaskResult

    from mbench.interop.mteb_tasks import find_mteb_task
    from mbench.tasks.index import get_index

    index = get_index(tasks_dirs)
    planned: dict[Path, _Planned] = {}
    skipped: list[Skipped] = []
    for result in found:
        record, source = result.record, result.directory
        reason = _why_not_exported(record)
        if reason is None and record.task not in index.tasks:
            reason = f"task {record.task!r} is not in the task index (pass --tasks-dir for your own tasks)"
        task = spec = None
        if reason is None:
            spec = index.task(record.task)
            task, why = find_mteb_task(spec)
            if task is None:
                reason = f"mteb does not know this task: {why}"
        if reason is not None or task is None or spec is None:
            skipped.append(Skipped(source, str(reason)))
            continue
        scores = {key: float(value) for metric, value in record.metrics.items() if (key := mteb_metric_key(metric))}
        main_key = task.metadata.main_score
        if main_key not in scores:
            skipped.append(Skipped(source, f"the result has no {main_key} (mteb's main score of {task.metadata.name})"))
            continue
        scores["main_score"] = scores[main_key]
        timings = record.timings
        task_result = TaskResult.from_task_results(
            task, {spec.split: {"default": scores}}, evaluation_time=float(sum(timings.values())),
        )
        name, revision = export_identity(record)
        path = out / model_folder(name) / revision_folder(revision) / f"{task.metadata.name}.json"
        if path in planned:
            raise MbenchError(
                f"{planned[path].source} and {source} would both be written to {path} (same model, revision and task): "
                "export one of them"
            )
        planned[path] = _Planned(source, path, name, revision, task_result, main_key, scores[main_key])
    return list(planned.values()), skipped


@dataclass(frozen=True)
class _Planned:
    source: Path
    path: Path
    model_name: str
    revision: str
    task_result: Any
    main_score_key: str
    main_score: float


def write_export(planned: Sequence[_Planned]) -> list[Exported]:
    """Write the planned task files and each revision folder's ``model_meta.json`` (every file atomically)."""
    written = []
    metas: dict[Path, tuple[str, str]] = {}
    for item in planned:
        metas[item.path.parent] = (item.model_name, item.revision)
        atomic_write_with(item.path, lambda tmp, item=item: item.task_result.to_disk(tmp))
        written.append(Exported(item.source, item.path, item.task_result.task_name, item.main_score_key, item.main_score))
    for folder, (name, revision) in metas.items():
        meta = _model_meta_dict(name, revision)
        atomic_write_with(folder / MODEL_META_FILE,
                      lambda tmp, meta=meta: tmp.write_text(json.dumps(meta, default=str, indent=4), encoding="utf-8"))
    return written


def _model_meta_dict(name: str, revision: str) -> dict[str, Any]:
    """mteb's ModelMeta of ``name`` (its registry entry, or an empty one) at ``revision``, as mteb writes it."""
    import mteb
    from mteb.models import ModelMeta

    try:
        meta = mteb.get_model_meta(name, fetch_from_hf=False)
    except KeyError:
        meta = ModelMeta.create_empty(overwrites={"name": name})
    return meta.model_copy(update={"revision": revision}).to_dict()


# ---------------------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class MtebResults:
    """One model's mteb result files from a folder, read by mteb's loader, keyed by mteb task name."""

    folder: Path
    model: str
    revision: str | None
    tasks: dict[str, Any]

    def score(self, task_name: str, split: str, key: str) -> float | None:
        """The mean of ``key`` over the subsets of ``split`` in ``task_name``'s file, None when absent."""
        result = self.tasks.get(task_name)
        entries = None if result is None else result.scores.get(split)
        if not entries or any(key not in entry for entry in entries):
            return None
        return float(sum(float(entry[key]) for entry in entries) / len(entries))


def read_mteb_results(folder: str | Path, model: str | None = None, revision: str | None = None) -> MtebResults:
    """The result files of one model (and revision) in a folder of mteb results.

    Layouts: ``<model>/<revision>/<Task>.json`` (mteb's ResultCache and today's results
    repository; ``model_meta.json`` names the model when present) and ``<model>/<Task>.json``
    (older result repositories, with no revision). ``model`` matches the model's name, its folder
    name, or, for folders named without the organisation, the part after the last ``/``. Several
    models, or several revisions of one, without a selector are an error listing them.
    """
    from mbench.models.builtin.mteb_encoder import mteb_version

    mteb_version()
    from mteb import TaskResult

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise MbenchError(f"mteb results folder {root}: no such directory")
    files: dict[tuple[str, str | None], list[Path]] = {}
    for path in sorted(root.rglob("*.json")):
        if path.name == MODEL_META_FILE or path.name.startswith("."):
            continue
        identity = _folder_identity(root, path.parent)
        if identity is not None:
            files.setdefault(identity, []).append(path)
    if not files:
        raise MbenchError(f"mteb results folder {root}: no result files (<model>/<revision>/<Task>.json)")
    chosen = [key for key in files if model is None or _same_model(key[0], model)]
    if revision is not None:
        chosen = [key for key in chosen if key[1] == revision]
    listing = ", ".join(f"{name}@{rev}" if rev else name for name, rev in sorted(files, key=str))
    if not chosen:
        wanted = f"{model}@{revision}" if revision else str(model)
        raise MbenchError(f"mteb results folder {root}: no results of {wanted} (it holds {listing})")
    if len(chosen) > 1:
        raise MbenchError(
            f"mteb results folder {root} holds several models or revisions ({listing}): "
            "name one with mteb_model (and mteb_revision)"
        )
    (name, rev), = chosen
    tasks = {}
    for path in files[(name, rev)]:
        try:
            result = TaskResult.from_disk(path)
        except Exception as err:  # a malformed file must name itself
            raise MbenchError(f"{path}: not an mteb result file: {type(err).__name__}: {err}") from None
        tasks[result.task_name] = result
    return MtebResults(root, name, rev, tasks)


def _folder_identity(root: Path, folder: Path) -> tuple[str, str | None] | None:
    """(model, revision) of a folder holding task files: from its ``model_meta.json``, else from its path."""
    meta_file = folder / MODEL_META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        return str(meta["name"]), (None if meta.get("revision") is None else str(meta["revision"]))
    parts = folder.relative_to(root).parts
    if len(parts) == 3 and parts[0] == "results":  # the root of an mteb ResultCache
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0].replace("__", "/"), None
    if len(parts) == 2:
        return parts[0].replace("__", "/"), parts[1]
    return None


def _same_model(found: str, wanted: str) -> bool:
    return found in (wanted, model_folder(wanted)) or ("/" not in found and found == wanted.rsplit("/", 1)[-1])


def fill_mteb_references(spec: Any, source: str, tasks_dirs: Sequence[str | Path] = ()) -> Any:
    """``spec`` with the values of each ``mteb_results`` reference column read from its folder (as fractions).

    A row's value is the row metric's mteb key (``ndcg@10`` -> ``ndcg_at_10``) in the file of the
    mteb task its task is, on the task's split (mean over subsets); a group row is the mean over
    its direct members. Rows whose task mteb does not know, or whose file or key is missing, stay
    empty. The column's source names the folder, the model and revision, and any task whose file
    was computed on another dataset revision than the task pins.
    """
    from mbench.reporting.leaderboard import LeaderboardFileError, Source
    from mbench.tasks.index import get_index

    index = get_index(tasks_dirs)
    columns = []
    for position, column in enumerate(spec.references):
        if column.mteb_results is None:
            columns.append(column)
            continue
        try:
            results = read_mteb_results(column.mteb_results, column.mteb_model, column.mteb_revision)
        except MbenchError as err:
            raise LeaderboardFileError(f"{source}: references.{position}.mteb_results: {err}") from None
        values: dict[str, float] = {}
        keys: set[str] = set()
        drifted: set[str] = set()
        for row in spec.rows:
            key = mteb_metric_key(row.metric)
            value = None if key is None else _row_value(row.task, key, results, index, drifted)
            if value is not None:
                values[row.key] = value
                keys.add(str(key))
        origin = column.source or Source(
            paper=f"mteb result files in {column.mteb_results}",
            table=results.model + (f" @ {results.revision}" if results.revision else ""),
            column=", ".join(sorted(keys)) or "(no matching scores)",
            note="; ".join(sorted(drifted)),
        )
        columns.append(column.model_copy(update={"values": values, "values_scale": 1.0, "source": origin}))
    return spec.model_copy(update={"references": columns})


def _row_value(name: str, key: str, results: MtebResults, index: Any, drifted: set[str]) -> float | None:
    """A task's score under ``key``, or a group's mean over its direct members (None if any is missing)."""
    from mbench.interop.mteb_tasks import find_mteb_task

    if name in index.groups:
        members = [_row_value(member, key, results, index, drifted) for member in index.group(name).tasks]
        return None if not members or any(v is None for v in members) else sum(members) / len(members)  # type: ignore[arg-type]
    spec = index.task(name)
    task, _ = find_mteb_task(spec)
    if task is None:
        return None
    value = results.score(task.metadata.name, spec.split, key)
    stored = results.tasks.get(task.metadata.name)
    if value is not None and stored is not None and stored.dataset_revision != spec.revision:
        drifted.add(f"{task.metadata.name} was scored on dataset revision {stored.dataset_revision}, "
                    f"{spec.name} pins {spec.revision}")
    return value
