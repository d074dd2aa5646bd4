"""Sweeps: a YAML grid of `mbench run` invocations, run one after another or as a Slurm job array.

A sweep file (validated strictly: an unknown key is an error naming the file and key)::

    # sweeps/instructions.yaml: which instruction each query gets, on the M-BEIR tasks
    models:                               # each: model (name, alias or module:factory), model_args, optional name label
      - model: clip-sf
        model_args: {dtype: float16}
    checkpoints: [/ckpt/step1000.pth, /ckpt/step2000.pth]   # optional: one point per path, passed as
    checkpoint_arg: checkpoint            # --model-arg checkpoint=PATH (default arg name: checkpoint)
    tasks: [mbeir]                        # one point per entry; an entry is a task, a group or "a,b"
    pools: [local]                        # default [local]
    instruction_policies: [first, seeded, none]   # default [first]
    seeds: [0, 1, 2]                      # only the `seeded` policy is expanded over seeds
    # shared `mbench run` options (all optional): data_dir, results_dir, cache_dir, tasks_dirs, device,
    # batch_size, num_workers, depth, search_backend, store_dtype, shard_size, reranker, reranker_args,
    # rerank_top_k, rerank_batch_size, progress

Grid order (deterministic, file order within each axis): models x checkpoints x tasks x pools x
instruction policies x seeds. Every grid point is exactly one `mbench run` argv
(`GridPoint.argv()`), so its results land where `mbench run` puts them and a resubmitted sweep
skips finished points (existing results are skipped) and re-encodes nothing (the embedding
store, keyed by content, is shared through `cache_dir`): resubmitting after a preemption is safe.

`mbench run` puts a non-default instruction policy's result beside the default one
(`<task>/<pool>.none/`, `<task>/<pool>.seeded-<seed>/`), so the points of an instruction
ablation never find each other's results. Seeds only change the `seeded` policy, so `first` and
`none` get one point each, not one per seed.

Relative paths (checkpoints, data_dir, ...) are passed through unchanged: they are relative to the
directory the sweep is launched from, as for `mbench run` (Slurm jobs start there too).

Executors: `local` runs the points in this process one after another, continues past a failing
point and exits 1 listing the failures; `slurm` submits one job per point as a submitit job
array (`pip install "mbench[cluster]"`); `--dry-run` prints every point's command.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mbench.engine.instructions import INSTRUCTION_POLICIES
from mbench.errors import MbenchError

ScalarArg = str | int | float | bool


class SweepFileError(MbenchError):
    """A sweep YAML that cannot be read or validated; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _nonempty_unique(values: list, key: str) -> list:
    if not values:
        raise ValueError(f"{key}: give at least one value")
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{key}: {value!r} is listed twice")
        seen.add(value)
    return values


class ModelEntry(_Strict):
    """One model of the grid: its name, factory arguments and an optional label."""

    model: str = Field(min_length=1, description="registered model name, alias, or package.module:factory")
    name: str | None = Field(default=None, min_length=1, description="label shown in sweep output (default: model)")
    model_args: dict[str, ScalarArg] = Field(default_factory=dict, description="--model-arg KEY=VALUE pairs")
    trust_remote_code: bool = False

    @property
    def label(self) -> str:
        """What sweep output calls this model."""
        return self.name or self.model


class SweepSpec(_Strict):
    """A sweep file: the grid axes and the `mbench run` options every point shares."""

    models: list[ModelEntry] = Field(min_length=1)
    checkpoints: list[str] | None = Field(default=None, description="one point per path, passed as checkpoint_arg")
    checkpoint_arg: str = Field(default="checkpoint", min_length=1)
    tasks: list[str] = Field(min_length=1, description="one point per entry: a task, a group or 'a,b'")
    pools: list[str] = Field(default_factory=lambda: ["local"])
    instruction_policies: list[Literal[INSTRUCTION_POLICIES]] = Field(default_factory=lambda: ["first"])  # type: ignore[valid-type]
    seeds: list[int] | None = Field(default=None, description="seeds of the seeded policy (default: mbench run's)")
    # Shared `mbench run` options; None leaves `mbench run`'s default (and its environment variables).
    data_dir: str | None = None
    results_dir: str | None = None
    cache_dir: str | None = None
    tasks_dirs: list[str] = Field(default_factory=list)
    device: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    num_workers: int | None = Field(default=None, ge=0)
    depth: int | None = Field(default=None, ge=1)
    search_backend: Literal["torch", "faiss"] | None = None
    store_dtype: Literal["native", "fp16"] | None = None
    shard_size: int | None = Field(default=None, ge=1)
    reranker: str | None = None
    reranker_args: dict[str, ScalarArg] = Field(default_factory=dict)
    rerank_top_k: int | None = Field(default=None, ge=1)
    rerank_batch_size: int | None = Field(default=None, ge=1)
    progress: bool = Field(default=True, description="false: --no-progress (cleaner Slurm logs)")

    @field_validator("checkpoints", "tasks", "pools", "instruction_policies", "seeds")
    @classmethod
    def _axis(cls, values: list | None, info: Any) -> list | None:
        if values is None:
            return None
        return _nonempty_unique(values, info.field_name)

    @field_validator("tasks")
    @classmethod
    def _task_entries(cls, values: list[str]) -> list[str]:
        for value in values:
            if not [t for t in value.split(",") if t.strip()]:
                raise ValueError(f"tasks: entry {value!r} names no task")
        return values

    @model_validator(mode="after")
    def _checkpoint_not_fixed(self) -> SweepSpec:
        # A model that already pins the checkpoint argument would make the axis ambiguous.
        if self.checkpoints is not None:
            for i, entry in enumerate(self.models):
                if self.checkpoint_arg in entry.model_args:
                    raise ValueError(
                        f"models[{i}].model_args sets {self.checkpoint_arg!r}, which the checkpoints axis substitutes; "
                        f"drop one of them")
        if self.reranker is None and (self.reranker_args or self.rerank_top_k or self.rerank_batch_size):
            raise ValueError("reranker_args, rerank_top_k and rerank_batch_size need `reranker`")
        return self


def _arg_text(value: ScalarArg) -> str:
    # YAML gives booleans as True/False; the model registry parses "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class GridPoint:
    """One `mbench run` of the sweep."""

    index: int
    model: ModelEntry
    checkpoint: str | None
    task: str
    pool: str
    instruction_policy: str
    seed: int | None
    sweep: SweepSpec

    @property
    def label(self) -> str:
        """Short description: model, checkpoint, task, pool, policy and seed."""
        parts = [self.model.label]
        if self.checkpoint is not None:
            parts.append(f"{self.sweep.checkpoint_arg}={self.checkpoint}")
        parts += [self.task, self.pool, self.instruction_policy]
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)

    def argv(self) -> list[str]:
        """The exact argv of `mbench.cli.main` for this point (starts with "run")."""
        sweep = self.sweep
        argv = ["run", "--model", self.model.model]
        model_args = dict(self.model.model_args)
        if self.checkpoint is not None:
            model_args[sweep.checkpoint_arg] = self.checkpoint
        for key in sorted(model_args):
            argv += ["--model-arg", f"{key}={_arg_text(model_args[key])}"]
        if self.model.trust_remote_code:
            argv.append("--trust-remote-code")
        argv += ["--tasks", self.task, "--pool", self.pool, "--instruction-policy", self.instruction_policy]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        options: list[tuple[str, Any]] = [
            ("--data-dir", sweep.data_dir), ("--results-dir", sweep.results_dir), ("--cache-dir", sweep.cache_dir),
            ("--device", sweep.device), ("--batch-size", sweep.batch_size), ("--num-workers", sweep.num_workers),
            ("--depth", sweep.depth), ("--search-backend", sweep.search_backend), ("--store-dtype", sweep.store_dtype),
            ("--shard-size", sweep.shard_size),
            ("--reranker", sweep.reranker), ("--rerank-top-k", sweep.rerank_top_k),
            ("--rerank-batch-size", sweep.rerank_batch_size),
        ]
        for flag, value in options:
            if value is not None:
                argv += [flag, str(value)]
        for directory in sweep.tasks_dirs:
            argv += ["--tasks-dir", directory]
        for key in sorted(sweep.reranker_args):
            argv += ["--reranker-arg", f"{key}={_arg_text(sweep.reranker_args[key])}"]
        if not sweep.progress:
            argv.append("--no-progress")
        return argv

    def command(self) -> str:
        """The shell command of this point, quoted for copy and paste."""
        return shlex.join(["mbench", *self.argv()])


def _format_errors(path: Path, err: ValidationError) -> str:
    import difflib

    from mbench.tasks.loader import format_validation_error

    text = format_validation_error(path, err, SweepSpec, {})
    # The shared formatter suggests keys at the top level only; a typo inside a model entry
    # (models.0.modle_args) deserves the same hint.
    for item in err.errors(include_url=False):
        loc = tuple(item.get("loc", ()))
        if item.get("type") == "extra_forbidden" and len(loc) == 3 and loc[0] == "models":
            where = f"{path}: models.{loc[1]}.{loc[2]}: unknown key"
            allowed = sorted(ModelEntry.model_fields)
            close = difflib.get_close_matches(str(loc[2]), allowed, n=1)
            hint = (f" (did you mean {close[0]!r}?)" if close else "") + f"; allowed keys: {', '.join(allowed)}"
            text = text.replace(where, where + hint, 1)
    return text


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep YAML (safe_load); errors name the file and the key."""
    from mbench.tasks.loader import read_yaml

    path = Path(path)
    data = read_yaml(path, SweepFileError)
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: expected a mapping of keys (models, tasks, ...) at the top level")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise SweepFileError(_format_errors(path, err)) from None


def check_tasks(sweep: SweepSpec, path: str | os.PathLike) -> None:
    """Fail before anything runs (or is submitted) when a task or group name is unknown."""
    from mbench.tasks import expand_task_names

    for i, entry in enumerate(sweep.tasks):
        try:
            expand_task_names([t.strip() for t in entry.split(",") if t.strip()], sweep.tasks_dirs)
        except MbenchError as err:
            raise SweepFileError(f"{path}: tasks[{i}]: {err}") from None


def expand(sweep: SweepSpec) -> list[GridPoint]:
    """Every grid point, in file order: models x checkpoints x tasks x pools x policies x seeds."""
    points: list[GridPoint] = []
    checkpoints: Sequence[str | None] = sweep.checkpoints if sweep.checkpoints is not None else [None]
    for model in sweep.models:
        for checkpoint in checkpoints:
            for task in sweep.tasks:
                for pool in sweep.pools:
                    for policy in sweep.instruction_policies:
                        # Seeds change only the seeded policy; other policies would repeat one result.
                        seeds: Sequence[int | None] = (sweep.seeds or [None]) if policy == "seeded" else [None]
                        for seed in seeds:
                            points.append(GridPoint(len(points), model, checkpoint, task, pool, policy, seed, sweep))
    return points


def run_point(argv: list[str]) -> int:
    """Run one grid point through the CLI; raise when it fails, so Slurm marks the job failed."""
    from mbench.cli import main

    code = main(argv)
    if code != 0:
        raise SweepPointFailed(f"{shlex.join(['mbench', *argv])} exited with {code}")
    return code


class SweepPointFailed(RuntimeError):
    """A grid point whose `mbench run` exited non-zero (raised inside a Slurm job)."""


def run_local(points: Sequence[GridPoint]) -> int:
    """Run the points one after another in this process; 1 when any failed (all are tried)."""
    from mbench.cli import main

    failed: list[tuple[GridPoint, str]] = []
    for n, point in enumerate(points, 1):
        print(f"[sweep {n}/{len(points)}] {point.command()}", file=sys.stderr, flush=True)
        try:
            code = main(point.argv())
            reason = f"exit code {code}"
        except SystemExit as err:  # argparse rejects an option value: the point fails, the sweep goes on
            code, reason = (err.code if isinstance(err.code, int) else 2), f"exit code {err.code}"
        except Exception as err:  # noqa: BLE001 - one point's crash must not cost the others
            traceback.print_exc()
            code, reason = 1, f"{type(err).__name__}: {err}"
        if code != 0:
            failed.append((point, reason))
    print(f"sweep: {len(points) - len(failed)} of {len(points)} point(s) succeeded", file=sys.stderr)
    if failed:
        print(f"sweep: {len(failed)} failed:", file=sys.stderr)
        for point, reason in failed:
            print(f"  [{reason}] {point.command()}", file=sys.stderr)
        return 1
    return 0


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of every job of the array (None: the cluster's default)."""

    partition: str | None = None
    gpus_per_node: int | None = None
    time_min: int | None = None
    array_parallelism: int | None = None
    job_name: str = "mbench-sweep"


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise MbenchError(
            "--executor slurm needs submitit: pip install 'mbench[cluster]' (or pip install submitit)"
        ) from None
    return submitit


def run_slurm(
    points: Sequence[GridPoint], options: SlurmOptions, log_dir: Path, *, cluster: str = "slurm", wait: bool = False
) -> int:
    """Submit one job per point as a submitit job array; with `wait`, 1 when any job failed."""
    submitit = _import_submitit()
    executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster=cluster)
    params: dict[str, Any] = {"name": options.job_name}
    if options.gpus_per_node is not None:
        params["gpus_per_node"] = options.gpus_per_node
    if options.time_min is not None:
        params["timeout_min"] = options.time_min
    if cluster == "slurm":  # submitit rejects slurm_* parameters for its other clusters
        if options.partition is not None:
            params["slurm_partition"] = options.partition
        if options.array_parallelism is not None:
            params["slurm_array_parallelism"] = options.array_parallelism
    executor.update_parameters(**params)
    jobs = executor.map_array(run_point, [point.argv() for point in points])
    for point, job in zip(points, jobs):
        print(f"{job.job_id}\t{point.command()}")
    print(f"sweep: submitted {len(jobs)} job(s); logs in {log_dir}", file=sys.stderr)
    if not wait:
        return 0
    failed = []
    for point, job in zip(points, jobs):
        # exception() waits and returns the error (None on success) without raising; the debug
        # cluster's result() would open a post-mortem debugger instead.
        error = job.exception()
        if error is not None:
            failed.append((point, job, error))
    print(f"sweep: {len(points) - len(failed)} of {len(points)} job(s) succeeded", file=sys.stderr)
    for point, job, error in failed:
        print(f"  [job {job.job_id}: {str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}] "
              f"{point.command()}", file=sys.stderr)
    return 1 if failed else 0


def dry_run(points: Sequence[GridPoint]) -> int:
    """Print the command of every point, one per line."""
    for point in points:
        print(point.command())
    print(f"sweep: {len(points)} grid point(s). Whether a point already has results is known only once its model "
          f"is built (the result path holds the model fingerprint); `mbench run` skips those that do.",
          file=sys.stderr)
    return 0
