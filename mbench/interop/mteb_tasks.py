"""Which mteb task an mbench task is, and mteb's own tasks reading a local BEIR folder instead of the hub.

An mbench task is an mteb task when both read the same data: the task's ``hf_dataset`` and
``revision`` equal an mteb task's dataset path and revision, and mteb evaluates that task on the
task's split. Nothing is transcribed by hand, so a task whose pinned revision differs from mteb's
is reported as unknown to mteb rather than filed under an mteb name that scores other data.
"""

from __future__ import annotations

import csv
import functools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec


@functools.lru_cache(maxsize=1)
def _mteb_tasks_by_dataset() -> dict[tuple[str, str | None], list[Any]]:
    from mbench.models.builtin.mteb_encoder import mteb_version

    mteb_version()
    import mteb

    by_dataset: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
    # Superseded tasks stay: an older mbench task (e.g. Touche2020) still names the data it reads.
    for task in mteb.get_tasks(exclude_superseded=False, exclude_aggregate=True):
        dataset = task.metadata.dataset
        by_dataset[(dataset["path"], dataset.get("revision"))].append(task)
    return dict(by_dataset)


def find_mteb_task(spec: TaskSpec) -> tuple[Any | None, str]:
    """The mteb task reading ``spec``'s dataset, revision and split, or None and a sentence saying why not."""
    if spec.hf_dataset is None:
        return None, f"task {spec.name} names no hf_dataset, so it is no mteb task"
    by_dataset = _mteb_tasks_by_dataset()
    matches = by_dataset.get((spec.hf_dataset, spec.revision), [])
    if not matches:
        revisions = sorted(str(rev) for path, rev in by_dataset if path == spec.hf_dataset)
        if revisions:
            return None, (f"mteb reads {spec.hf_dataset} at revision {', '.join(revisions)}, "
                          f"not at {spec.revision} as task {spec.name} does")
        return None, f"no mteb task reads {spec.hf_dataset} (task {spec.name})"
    on_split = [task for task in matches if spec.split in task.metadata.eval_splits]
    names = sorted(task.metadata.name for task in matches)
    if not on_split:
        return None, f"mteb evaluates {', '.join(names)} on other splits than {spec.split!r} (task {spec.name})"
    if len(on_split) > 1:
        return None, f"several mteb tasks read {spec.hf_dataset}@{spec.revision}: {', '.join(names)} (task {spec.name})"
    task = on_split[0]
    if bool(task.ignore_identical_ids) != spec.ignore_identical_ids:
        # The same rankings would score differently: one side drops the document sharing the query's id.
        return None, (f"mteb's {task.metadata.name} has ignore_identical_ids={bool(task.ignore_identical_ids)}, "
                      f"task {spec.name} has {spec.ignore_identical_ids}")
    return task, ""


def local_beir_task(mteb_name: str, folder: Path | str, *, name: str | None = None) -> Any:
    """mteb's task ``mteb_name`` whose data is read from a BEIR folder (offline) instead of the hub.

    The task keeps its mteb class and metadata (name, splits, main score, ``ignore_identical_ids``,
    cut-offs), so mteb evaluates it as the hub version; only where the data comes from changes.
    ``name`` renames it, for a folder holding other data than the mteb task's (mteb then scores
    that collection with the task's protocol).
    """
    from mbench.models.builtin.mteb_encoder import mteb_version

    mteb_version()
    import mteb

    try:
        upstream = type(mteb.get_task(mteb_name))
    except KeyError as err:
        raise MbenchError(f"mteb: {err.args[0] if err.args else err}") from None
    root = Path(folder)

    class LocalBeirTask(upstream):  # type: ignore[misc, valid-type]
        if name is not None:
            metadata = upstream.metadata.model_copy(update={"name": name, "dataset": {"path": str(root), "revision": "local"}})

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            self.dataset = {"default": {split: read_beir_split(root, split) for split in self.eval_splits}}
            self.data_loaded = True

    LocalBeirTask.__name__ = LocalBeirTask.__qualname__ = f"Local{upstream.__name__}"
    return LocalBeirTask()


def read_beir_split(folder: Path, split: str) -> dict[str, Any]:
    """A BEIR folder's split as mteb's ``RetrievalSplitData``: corpus and queries as datasets, qrels as a dict.

    Read with the standard library and ``datasets`` only, as mteb's hub loader would see the same
    tables: ids as strings, queries without a qrels line dropped, every grade kept.
    """
    from datasets import Dataset

    corpus = _read_jsonl(folder / "corpus.jsonl")
    queries = _read_jsonl(folder / "queries.jsonl")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    try:
        with open(qrels_file, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            next(rows, None)  # the header: query-id, corpus-id, score
            for qid, did, score in rows:
                qrels.setdefault(qid, {})[did] = int(score)
    except FileNotFoundError:
        raise MbenchError(f"{qrels_file}: file not found") from None
    judged = [row for row in queries if str(row["_id"]) in qrels]
    return {
        "corpus": Dataset.from_dict({
            "id": [str(row["_id"]) for row in corpus],
            "title": [row.get("title") or "" for row in corpus],
            "text": [row.get("text") or "" for row in corpus],
        }),
        "queries": Dataset.from_dict({"id": [str(row["_id"]) for row in judged], "text": [row["text"] for row in judged]}),
        "relevant_docs": qrels,
        "top_ranked": None,
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        raise MbenchError(f"{path}: file not found") from None
