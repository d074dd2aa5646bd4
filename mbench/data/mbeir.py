"""The M-BEIR adapter: a directory in M-BEIR's layout (``query/``, ``cand_pool/``, ``qrels/``,
``instructions/``, ``mbeir_images/``, as TIGER-Lab/M-BEIR ships it) -> TaskData.

Queries come from ``files.queries``, judgments from ``files.qrels`` (5 columns
``qid 0 did rel task_id``), the local pool from ``pools.local.file``; the global pool is
the concatenation of the local pools of the tasks of the group named by ``union_of``. Image
paths in the files are relative to the M-BEIR root and are stored absolute. qid and did are
separate namespaces ("9:1" can be both), so identical ids are never dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mbench.data.adapter import FileAdapter, FilesSchema, LoadRequest
from mbench.data.common import DataWarning, Problems, absolute_paths, check_unique, require_column
from mbench.data.types import MODALITIES, ItemTable, QrelsSource, TaskData
from mbench.errors import MbenchError
from mbench.formats.jsonl import read_jsonl
from mbench.formats.qrels import Qrels, read_mbeir_qrels
from mbench.metrics import Relevance
from mbench.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import pandas as pd

QUERY_COLUMNS = {
    "qid": "string",
    "query_txt": "string",
    "query_img_path": "string",
    "query_modality": "string",
    "task_id": "int64",
}
CAND_COLUMNS = {"did": "string", "txt": "string", "img_path": "string", "modality": "string"}
INSTRUCTIONS_FILE = "instructions/query_instructions.tsv"

# OVEN (5) and InfoSeek (6) qrels name positives from the other dataset's pool: absent from
# the local pool, present in the global one (UniIR evaluates the local pool without them).
CROSS_DATASET_PREFIX = {5: "6:", 6: "5:"}


@dataclass(frozen=True)
class PoolMember:
    """One local pool of a global pool: the task it belongs to and its file."""

    task: str
    path: Path
    root: Path


class MbeirFiles(FilesSchema):
    """An M-BEIR task's files, relative to the M-BEIR root (its local pool file is ``pools.local.file``)."""

    queries: str
    qrels: str
    instructions: str = INSTRUCTIONS_FILE


class MbeirAdapter(FileAdapter):
    """M-BEIR's layout on disk, or the files of one task from the pinned M-BEIR revision on the hub."""

    name = "mbeir"
    files = MbeirFiles
    options = frozenset({"dataset_id", "uniir_task_id", "paper_task", "hf_dataset", "revision"})
    downloads = True

    def load(self, spec: TaskSpec, request: LoadRequest) -> TaskData:
        """The task against its local pool, or against the union of its group's local pools (``union_of``)."""
        folder = request.folder
        if folder is None:
            folder = request.from_hub(spec, lambda: _snapshot(spec, request))
        members: list[PoolMember] = []
        pool_spec = spec.pools.get(request.pool)
        if pool_spec is not None and pool_spec.union_of is not None:
            members = global_pool_members(spec, pool_spec.union_of, folder, request)
        return load_mbeir(spec, folder, pool="local" if not members else request.pool, global_members=members,
                          check_images=request.check_images)

    def count_file(self, spec: TaskSpec, folder: Path) -> int:
        """Lines of the task's 5-column qrels file."""
        return count_judgments(spec, folder)

    def how_to_get(self, spec: TaskSpec) -> str:
        """Where M-BEIR comes from."""
        return (f"download the M-BEIR dataset (huggingface-cli download {spec.hf_dataset or 'TIGER-Lab/M-BEIR'} "
                f"--repo-type dataset{' --revision ' + spec.revision if spec.revision else ''} "
                f"--local-dir ROOT/{spec.data_folder}) and extract its image archive there")


def global_pool_members(spec: TaskSpec, group: str, folder: Path, request: LoadRequest) -> list[PoolMember]:
    """The local pools whose concatenation is ``spec``'s pool ``union_of: group``, each file once."""
    members: list[PoolMember] = []
    seen: set[Path] = set()
    for member in request.group_members(group):
        local = member.pools.get("local")
        if member.adapter != MbeirAdapter.name or local is None or local.file is None:
            raise MbenchError(
                f"task {spec.name}: pool union_of {group!r} includes {member.name}, which has no M-BEIR local pool file"
            )
        member_folder = folder if member.data_folder == spec.data_folder else request.folder_of(member)
        if member_folder is None:
            raise MbenchError(request.not_found(member))
        path = (member_folder / local.file).absolute()
        if path in seen:
            continue
        seen.add(path)
        members.append(PoolMember(task=member.name, path=path, root=member_folder))
    if not members:
        raise MbenchError(f"task {spec.name}: group {group!r} of its pool has no tasks")
    return members


def _snapshot(spec: TaskSpec, request: LoadRequest) -> Path:
    """Download the files this task reads from the pinned M-BEIR revision; return the snapshot folder."""
    from huggingface_hub import snapshot_download

    patterns = required_files(spec, "local") + [INSTRUCTIONS_FILE]
    pool_spec = spec.pools.get(request.pool)
    if pool_spec is not None and pool_spec.union_of is not None:
        patterns += [m.pools["local"].file for m in request.group_members(pool_spec.union_of) if "local" in m.pools]
    path = snapshot_download(
        repo_id=spec.hf_dataset, repo_type="dataset", revision=spec.revision, allow_patterns=sorted(set(patterns))
    )
    return Path(path)


def read_queries(path: Path) -> pd.DataFrame:
    """An M-BEIR query file as a DataFrame (qid, query_txt, query_img_path, query_modality, task_id)."""
    frame = read_jsonl(path, QUERY_COLUMNS)
    require_column(frame, "qid", path)
    return frame


def read_pool(path: Path) -> pd.DataFrame:
    """An M-BEIR candidate pool file as a DataFrame (did, txt, img_path, modality)."""
    frame = read_jsonl(path, CAND_COLUMNS)
    require_column(frame, "did", path)
    return frame


def pool_table(frame: pd.DataFrame, root: Path, path: Path, problems: Problems) -> ItemTable:
    """Turn a candidate DataFrame into an ItemTable, recording bad modalities in ``problems``."""
    _check_modalities(frame["modality"], path, "candidate", problems)
    return ItemTable(
        ids=frame["did"].tolist(),
        texts=frame["txt"].tolist(),
        images=absolute_paths(root, frame["img_path"].tolist()),
        modalities=frame["modality"].tolist(),
    )


# The last global pool read, by its files' identity: the 16 M-BEIR tasks of one run share one
# 5.6M-row pool, so it is parsed once per process (and shared by object, which lets the engine
# reuse what it derived from it, such as embedding keys and tie ranks).
_GLOBAL_POOL_MEMO: dict[tuple, ItemTable] = {}


def read_global_pool(members: Sequence[PoolMember], problems: Problems) -> ItemTable:
    """The concatenation of local pools, with ``source`` naming each candidate's pool; a did in two pools is a problem."""
    identity = tuple(
        (member.task, str(member.path), str(member.root), member.path.stat().st_mtime_ns, member.path.stat().st_size)
        for member in members
        if member.path.exists()
    )
    if len(identity) == len(members) and identity in _GLOBAL_POOL_MEMO:
        return _GLOBAL_POOL_MEMO[identity]
    clean = not problems
    table = _read_global_pool(members, problems)
    if clean and not problems and len(identity) == len(members):
        _GLOBAL_POOL_MEMO.clear()
        _GLOBAL_POOL_MEMO[identity] = table
    return table


def _read_global_pool(members: Sequence[PoolMember], problems: Problems) -> ItemTable:
    import pandas as pd

    frames, sources = [], []
    for number, member in enumerate(members):
        frame = read_pool(member.path)
        check_unique(frame["did"], member.path, "did", problems)
        _check_modalities(frame["modality"], member.path, "candidate", problems)
        frame = frame.assign(img_path=absolute_paths(member.root, frame["img_path"].tolist()))
        frames.append(frame)
        sources.append(np.full(len(frame), number, dtype=np.int32))
    pool = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CAND_COLUMNS))
    source = np.concatenate(sources) if sources else np.zeros(0, dtype=np.int32)
    repeated = pool["did"].duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = repeated.nonzero()[0]
        seen: dict[str, int] = {}
        for row, did in zip(rows.tolist(), pool["did"].to_numpy()[rows].tolist()):
            owner = int(source[row])
            if did in seen and seen[did] != owner:
                problems.add(
                    "duplicate global did",
                    f"did {did!r} is in two local pools: {members[seen[did]].path} and {members[owner].path}",
                )
            seen.setdefault(did, owner)
    return ItemTable(
        ids=pool["did"].tolist(),
        texts=pool["txt"].tolist(),
        images=pool["img_path"].tolist(),
        modalities=pool["modality"].tolist(),
        source=source,
        source_names=[member.task for member in members],
    )


def load_mbeir(
    spec: TaskSpec,
    folder: Path,
    *,
    pool: str = "local",
    global_members: Sequence[PoolMember] = (),
    check_images: bool = True,
) -> TaskData:
    """Load one M-BEIR task from ``folder`` against its local pool or the union of ``global_members``."""
    problems = Problems()
    queries_path = _task_file(spec, folder, "queries")
    qrels_path = _task_file(spec, folder, "qrels")
    queries = read_queries(queries_path)
    check_unique(queries["qid"], queries_path, "qid", problems)
    _check_modalities(queries["query_modality"], queries_path, "query", problems)
    if pool == "local":
        local_path = folder / _local_pool_file(spec)
        frame = read_pool(local_path)
        check_unique(frame["did"], local_path, "did", problems)
        candidates = pool_table(frame, folder, local_path, problems)
    else:
        candidates = read_global_pool(global_members, problems)
    qrels = read_mbeir_qrels(qrels_path)
    relevance, kept, outside_pool = _relevance(spec, qrels, qrels_path, queries["qid"], candidates, pool, problems)
    problems.raise_if_any(f"task {spec.name} ({folder})")
    if check_images:
        _check_image_roots(folder, [p for p in queries["query_img_path"].tolist() if p], candidates)
    check_instructions(spec, folder)
    queries = queries.iloc[kept]
    query_table = ItemTable(
        ids=queries["qid"].tolist(),
        texts=queries["query_txt"].tolist(),
        images=absolute_paths(folder, queries["query_img_path"].tolist()),
        modalities=queries["query_modality"].tolist(),
    )
    return TaskData(
        name=spec.name, queries=query_table, pool=candidates, relevance=relevance,
        source=str(folder), pool_name=pool,
        qrels=QrelsSource(files=(str(qrels_path.absolute()),), format="mbeir", outside_pool=outside_pool,
                          outside_pool_prefix=CROSS_DATASET_PREFIX.get(spec.dataset_id or -1) if outside_pool else None),
    )


def _relevance(
    spec: TaskSpec,
    qrels: Qrels,
    path: Path,
    qids: pd.Series,
    pool: ItemTable,
    pool_name: str,
    problems: Problems,
) -> tuple[Relevance, np.ndarray, int]:
    """Map qrels onto query rows and pool indices, and count the judgments outside the pool by
    M-BEIR's cross-dataset rule; queries without judgments are dropped."""
    import pandas as pd

    query_index = pd.Index(qids)
    if not query_index.is_unique:
        query_index = pd.Index(qids.drop_duplicates())
    row = query_index.get_indexer(qrels.qids)
    pool_index = pd.Index(pool.ids)
    if not pool_index.is_unique:
        # Repeated dids are already recorded as problems; this lookup only finds the unknown ones.
        pool_index = pool_index.drop_duplicates()
    cand = pool_index.get_indexer(qrels.docids) if len(pool_index) else np.full(len(qrels), -1)
    unknown = cand < 0
    prefix = CROSS_DATASET_PREFIX.get(spec.dataset_id or -1)
    if pool_name == "local" and prefix is not None:
        # M-BEIR's rule, not a fault of the data: UniIR scores the local pool without these
        # judgments, so they are counted (QrelsSource.outside_pool), not warned about.
        cross = unknown & pd.Series(qrels.docids, dtype=object).str.startswith(prefix).to_numpy(dtype=bool)
        unknown &= ~cross
        drop_cross = cross
    else:
        drop_cross = np.zeros(len(qrels), dtype=bool)
    bad = np.union1d(np.flatnonzero(row < 0), np.flatnonzero(unknown)).tolist()
    lines = dict(zip(bad, qrels.line_numbers(bad)))
    for judgment in np.flatnonzero(row < 0).tolist():
        problems.add("unknown qid", f"{path}:{lines[judgment]}: qid {qrels.qids[judgment]!r} is not in the query file")
    for judgment in np.flatnonzero(unknown).tolist():
        problems.add("unknown did",
                     f"{path}:{lines[judgment]}: did {qrels.docids[judgment]!r} is not in the {pool_name} pool of {spec.name}")
    if problems:
        return Relevance.from_lists([]), np.zeros(0, dtype=np.int64), 0
    keep = (row >= 0) & (cand >= 0) & ~drop_cross
    judged = np.unique(row[keep])
    new_row = np.full(len(query_index), -1, dtype=np.int64)
    new_row[judged] = np.arange(judged.size)
    relevance = Relevance.from_pairs(new_row[row[keep]], cand[keep], qrels.grades[keep], judged.size)
    # Rows of the query file in the order of the surviving queries.
    query_rows = pd.Index(qids).get_indexer(query_index[judged])
    return relevance, query_rows, int(drop_cross.sum())


def count_judgments(spec: TaskSpec, folder: Path) -> int:
    """Number of judgments in the task's qrels file (what ``n_qrels`` in the YAML counts)."""
    return len(read_mbeir_qrels(_task_file(spec, folder, "qrels")))


def check_instructions(spec: TaskSpec, folder: Path) -> list[str]:
    """Compare the task's instructions with ``instructions/query_instructions.tsv`` when present; warn on differences."""
    import pandas as pd

    path = folder / MbeirAdapter().files_of(spec).instructions
    if not path.is_file() or spec.dataset_id is None:
        return []
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    needed = {"query_modality", "cand_modality", "dataset_id"}
    if not needed <= set(table.columns):
        return [f"{path}: expected columns {sorted(needed)} and prompt_1..prompt_N"]
    match = table[
        (table["query_modality"] == spec.query_modality)
        & (table["cand_modality"] == spec.cand_modality)
        & (table["dataset_id"].str.strip() == str(spec.dataset_id))
    ]
    if match.empty:
        differences = [f"{path}: no row for ({spec.query_modality}, {spec.cand_modality}, dataset {spec.dataset_id})"]
    else:
        prompt_columns = sorted((c for c in table.columns if c.startswith("prompt_")), key=lambda c: int(c[7:]))
        file_prompts = [p.strip() for p in match.iloc[0][prompt_columns].tolist() if p.strip()]
        differences = []
        for number in range(max(len(file_prompts), len(spec.instructions))):
            ours = spec.instructions[number].strip() if number < len(spec.instructions) else None
            theirs = file_prompts[number] if number < len(file_prompts) else None
            if ours != theirs:
                differences.append(f"prompt_{number + 1}: task YAML {ours!r} vs {path.name} {theirs!r}")
    if differences:
        warnings.warn(
            f"instructions of {spec.name} differ from {path}:\n  " + "\n  ".join(differences), DataWarning,
            stacklevel=3,
        )
    return differences


def required_files(spec: TaskSpec, pool: str = "local") -> list[str]:
    """Paths, relative to the task folder, that loading the task reads (for hub downloads and checks)."""
    files = [MbeirAdapter().files_of(spec).queries, MbeirAdapter().files_of(spec).qrels]
    if pool == "local" and "local" in spec.pools and spec.pools["local"].file:
        files.append(spec.pools["local"].file)
    return files


def _task_file(spec: TaskSpec, folder: Path, key: str) -> Path:
    return folder / getattr(MbeirAdapter().files_of(spec), key)


def _local_pool_file(spec: TaskSpec) -> str:
    local = spec.pools.get("local")
    if local is None or local.file is None:
        raise MbenchError(f"task {spec.name}: `pools.local.file` is not set (the mbeir adapter needs it)")
    return local.file


def _check_modalities(values: pd.Series, path: Path, what: str, problems: Problems) -> None:
    bad = ~values.isin(MODALITIES).to_numpy()
    for row in bad.nonzero()[0].tolist():
        problems.add(
            f"{what} modality", f"{path}:{row + 1}: {what} modality {values.iloc[row]!r} is not one of {MODALITIES}"
        )


def _check_image_roots(folder: Path, query_images: list[str], pool: ItemTable) -> None:
    """A missing image directory is an error at load time; single missing files are `mbench validate`'s job."""
    import pandas as pd

    # Vectorised over the (up to 5.6M) pool paths: only the distinct parent folders are stat'ed.
    paths = pd.Series(absolute_paths(folder, query_images) + list(pool.images), dtype=object).dropna()
    parents = paths.str.rpartition("/")[0].unique().tolist() if len(paths) else []
    missing = sorted(parent for parent in parents if not Path(parent).is_dir())
    if missing:
        folder_abs = Path(folder).absolute()
        shown = ", ".join(missing[:3]) + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
        raise MbenchError(
            f"M-BEIR images missing: no folder {shown}. Download the images archive of the TIGER-Lab/M-BEIR "
            f"dataset (Hugging Face hub) and extract it into {folder_abs} so that mbeir_images/ sits there"
        )
