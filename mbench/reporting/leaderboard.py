"""The schema of a leaderboard spec (`leaderboards/*.yaml`): which results go in which cell of a table.

A spec names rows (a task or group, the metric of the row, its pool), run columns (results picked
from a results directory by model name, fingerprint prefix or their own directory), reference
columns (published numbers transcribed into the YAML with their source), averages over named
rows, display names and the number format. Validated strictly (unknown keys are errors) and
checked against the task index, so a typo in a task or metric name fails at load time, naming
the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mbench.errors import MbenchError
from mbench.formats.specfile import read_yaml, relative_inside
from mbench.metrics import parse_metric

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-+@]*$"

Kind = Literal["retrieval", "rerank"]


class LeaderboardFileError(MbenchError):
    """A leaderboard YAML that cannot be read or validated; the message names file and key."""


class _Strict(BaseModel):
    # A published number of NaN or inf is a transcription error, never a value to print.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NumberFormat(_Strict):
    """How fractions are shown: multiplied by `scale`, with `decimals` digits after the point."""

    scale: float = Field(default=100.0, gt=0, description="fractions are multiplied by this (100: percent)")
    decimals: int | None = Field(
        default=None, ge=0, le=6,
        description="digits after the point (a paper's precision); default: mbench's display rule (2, or $MBENCH_DECIMALS)",
    )


class ResultFilter(_Strict):
    """Which kind of result a row or column wants: first-stage retrieval or a rerank of it."""

    kind: Kind | None = Field(default=None, description="retrieval (default) or rerank")
    reranker: str | None = Field(default=None, description="rerank results of this reranker model name only")
    top_k: int | None = Field(default=None, ge=1, description="rerank results of this depth only")


class Row(ResultFilter):
    """One task (or group, shown as the mean of its scored members) scored with one metric."""

    id: str | None = Field(default=None, pattern=_ID_PATTERN, description="key for averages and references; default: task")
    task: str = Field(description="task name, or a group name (mean over its direct members)")
    metric: str = Field(description="metric of this row, e.g. hit@5")
    pool: str | None = Field(default=None, description="candidate pool; default: the spec's `pool`")
    display: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        parse_metric(metric)
        return metric

    @property
    def key(self) -> str:
        """The row's id: `id`, or the task name."""
        return self.id or self.task

    @property
    def label(self) -> str:
        """What the table shows for this row."""
        return self.display or self.key


class Average(_Strict):
    """A row holding the mean of other rows; missing unless every one of its cells is present."""

    id: str = Field(pattern=_ID_PATTERN)
    rows: list[str] = Field(min_length=1, description="ids of the rows averaged")
    display: str | None = None
    metric: str | None = Field(
        default=None, description="average this metric of the rows' tasks instead of each row's own metric"
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str | None) -> str | None:
        if metric is not None:
            parse_metric(metric)
        return metric

    @property
    def label(self) -> str:
        """What the table shows for this average."""
        return self.display or self.id


class Source(_Strict):
    """Where a reference column's numbers were published."""

    paper: str
    table: str
    column: str
    note: str = ""


class RunColumn(ResultFilter):
    """A column filled from results: every result that matches all given selectors; the newest wins."""

    name: str = Field(pattern=_ID_PATTERN)
    display: str | None = None
    model: str | None = Field(default=None, description="model name as recorded in result.json (or its directory name)")
    fingerprint: str | None = Field(
        default=None, pattern=r"^[0-9a-f]+$", description="prefix of the model fingerprint (hex)"
    )
    results_dir: str | None = Field(
        default=None, description="read this column from this results directory (relative to the working directory)"
    )
    reference: str | None = Field(default=None, description="reference column that --delta subtracts from this one")

    @field_validator("results_dir")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        return None if value is None else relative_inside(value)

    @model_validator(mode="after")
    def _selects_something(self) -> RunColumn:
        # A column with no selector would silently mix every model of the results directory.
        if self.model is None and self.fingerprint is None and self.results_dir is None:
            raise ValueError("a run column needs at least one of model, fingerprint or results_dir")
        return self

    @property
    def label(self) -> str:
        """The column header."""
        return self.display or self.name


class ReferenceColumn(_Strict):
    """Published numbers keyed by row or average id: transcribed with their source, or read from mteb result files."""

    name: str = Field(pattern=_ID_PATTERN)
    display: str | None = None
    source: Source | None = Field(default=None, description="where the numbers were published (required for `values`)")
    values_scale: float = Field(
        default=100.0, gt=0, description="the factor the values were printed with: 100 for 41.0 = 0.410, 1 for fractions"
    )
    values: dict[str, float] = Field(default_factory=dict)
    mteb_results: str | None = Field(
        default=None,
        description="a folder of mteb result files (relative to the working directory): the values are read from it "
        "through mteb's loader, one per row whose task mteb knows",
    )
    mteb_model: str | None = Field(default=None, description="the model of the mteb folder (needed when it holds several)")
    mteb_revision: str | None = Field(default=None, description="the revision (needed when the folder holds several)")

    @model_validator(mode="after")
    def _one_origin(self) -> ReferenceColumn:
        if self.mteb_results is None:
            if self.source is None:
                raise ValueError("a reference column needs `source` (where its `values` were published) or `mteb_results`")
            if self.mteb_model is not None or self.mteb_revision is not None:
                raise ValueError("mteb_model and mteb_revision select from `mteb_results`, which is not given")
        elif self.values or "values_scale" in self.model_fields_set:
            raise ValueError("a column read from `mteb_results` takes no `values` or `values_scale` (mteb files hold fractions)")
        return self

    @property
    def label(self) -> str:
        """The column header."""
        return self.display or self.name

    def fraction(self, key: str) -> float | None:
        """The value of row or average `key` as a fraction, or None when not transcribed."""
        value = self.values.get(key)
        return None if value is None else value / self.values_scale


class Leaderboard(_Strict):
    """A whole table: rows, averages, run and reference columns, format."""

    name: str = Field(pattern=_ID_PATTERN)
    title: str = ""
    description: str = ""
    pool: str | None = Field(default=None, description="default pool of the rows")
    format: NumberFormat = Field(default_factory=NumberFormat)
    rows: list[Row] = Field(min_length=1)
    averages: list[Average] = Field(default_factory=list)
    runs: list[RunColumn] = Field(default_factory=list)
    references: list[ReferenceColumn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Leaderboard:
        keys = [row.key for row in self.rows]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise ValueError(f"rows: duplicate row id(s) {duplicated}: give repeated tasks an `id`")
        for position, average in enumerate(self.averages):
            if average.id in keys:
                raise ValueError(f"averages.{position}.id: {average.id!r} is also a row id")
            unknown = [r for r in average.rows if r not in keys]
            if unknown:
                raise ValueError(f"averages.{position}.rows: unknown row id(s) {unknown}; row ids are {keys}")
        columns = [c.name for c in self.runs] + [c.name for c in self.references]
        dup_columns = sorted({c for c in columns if columns.count(c) > 1})
        if dup_columns:
            raise ValueError(f"duplicate column name(s) {dup_columns} among runs and references")
        if not columns:
            raise ValueError("no columns: give `runs`, `references` or both")
        reference_names = {c.name for c in self.references}
        for position, run in enumerate(self.runs):
            if run.reference is not None and run.reference not in reference_names:
                raise ValueError(
                    f"runs.{position}.reference: {run.reference!r} is not a reference column ({sorted(reference_names)})"
                )
            for row_position, row in enumerate(self.rows):
                for field in ("kind", "reranker", "top_k"):
                    mine, theirs = getattr(run, field), getattr(row, field)
                    if mine is not None and theirs is not None and mine != theirs:
                        raise ValueError(
                            f"runs.{position}.{field} = {mine!r} contradicts rows.{row_position}.{field} = {theirs!r}"
                        )
        valid_keys = set(keys) | {a.id for a in self.averages}
        for position, reference in enumerate(self.references):
            unknown = sorted(set(reference.values) - valid_keys)
            if unknown:
                raise ValueError(
                    f"references.{position}.values: unknown row or average id(s) {unknown}; known: {sorted(valid_keys)}"
                )
        for position, row in enumerate(self.rows):
            if row.pool is None and self.pool is None:
                raise ValueError(f"rows.{position}.pool: no pool for this row and no spec-level `pool`")
        return self

    def row_pool(self, row: Row) -> str:
        """The pool of `row`: its own, or the spec's default."""
        return row.pool or self.pool  # type: ignore[return-value]

    def reference(self, name: str) -> ReferenceColumn:
        """The reference column called `name`."""
        for column in self.references:
            if column.name == name:
                return column
        raise MbenchError(f"leaderboard {self.name!r} has no reference column {name!r}")


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_leaderboard(data: Any, source: str) -> Leaderboard:
    """Validate an already-parsed YAML mapping; errors name `source` and the offending key."""
    if not isinstance(data, dict):
        raise LeaderboardFileError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return Leaderboard.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; leaderboards/README.md lists the keys)"
            problems.append(f"{source}: {_location(error['loc'])}: {message}")
        raise LeaderboardFileError("\n".join(problems)) from None


def load_leaderboard(path: str | Path, tasks_dirs: Iterable[str | Path] = ()) -> Leaderboard:
    """Read, validate and check a leaderboard YAML against the task index."""
    path = Path(path)
    data = read_yaml(path, LeaderboardFileError, missing="no such file (packaged specs: `mbench table --list`)")
    spec = parse_leaderboard(data, str(path))
    check_tasks(spec, str(path), tasks_dirs)
    if any(column.mteb_results is not None for column in spec.references):
        from mbench.interop.mteb_results import fill_mteb_references

        spec = fill_mteb_references(spec, str(path), tasks_dirs)
    return spec


def check_tasks(spec: Leaderboard, source: str, tasks_dirs: Iterable[str | Path] = ()) -> None:
    """Every row names a known task or group whose tasks compute the row's metric in the row's pool."""
    from mbench.tasks.index import get_index

    index = get_index(tasks_dirs)
    for position, row in enumerate(spec.rows):
        if row.task in index.tasks:
            members = [row.task]
        elif row.task in index.groups:
            # A group row averages its scored members only (TaskIndex.scored_members).
            members = index.scored_tasks([row.task])
            if not members:
                raise LeaderboardFileError(f"{source}: rows.{position}.task: group {row.task!r} has no scored task")
        else:
            try:
                index.source(row.task)  # raises with close matches
            except MbenchError as err:
                raise LeaderboardFileError(f"{source}: rows.{position}.task: {err}") from None
            continue
        pool = spec.row_pool(row)
        for member in members:
            task = index.task(member)
            if not task.scored:
                raise LeaderboardFileError(f"{source}: rows.{position}.task: {member!r} is not scored locally")
            if row.metric not in task.metrics:
                raise LeaderboardFileError(
                    f"{source}: rows.{position}.metric: task {member!r} does not compute {row.metric!r} "
                    f"(it computes {', '.join(task.metrics)})"
                )
            if pool not in task.pools:
                raise LeaderboardFileError(
                    f"{source}: rows.{position}.pool: task {member!r} has no pool {pool!r} "
                    f"(it has {', '.join(task.pools)})"
                )


def packaged_leaderboards_dir() -> Path | None:
    """The shipped leaderboard YAMLs: inside the wheel, or the repository's `leaderboards/` from source."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_packaged" / "leaderboards"
    if installed.is_dir():
        return installed
    source = package_dir.parent / "leaderboards"
    return source if source.is_dir() else None


def resolve_leaderboard_path(name_or_path: str) -> Path:
    """A spec path as given, or a packaged spec by name (`mm-embed-table1` or `mm-embed-table1.yaml`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = packaged_leaderboards_dir()
    if packaged is not None and path.parent == Path("."):
        for candidate in (packaged / path.name, packaged / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    known = ", ".join(p.stem for p in list_packaged_leaderboards())
    raise LeaderboardFileError(f"{name_or_path}: no such file or packaged leaderboard (packaged: {known or 'none'})")


def list_packaged_leaderboards() -> list[Path]:
    """The YAML files of the shipped leaderboards, sorted by name."""
    packaged = packaged_leaderboards_dir()
    if packaged is None:
        return []
    return sorted(p for p in packaged.glob("*.yaml") if not p.name.startswith("_"))
