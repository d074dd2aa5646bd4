"""The data-adapter contract: how one dataset layout on disk (or on the hub) becomes a ``TaskData``.

A task YAML names its adapter (``adapter: beir``); the adapter owns everything format-specific
about the task: which ``files:`` keys it takes (a typed schema with defaults), which of the task
keys beyond the common ones it reads (``options``, e.g. M-BEIR's ``dataset_id``), how to load,
how to count the judgments ``n_qrels`` declares, what else to check, and where to get the data.
Adapters are found like models: the built-ins, then the entry-point group ``mbench.adapters``
(see ``mbench.data.registry``).

Loading never imports pandas or torch at module level here, so validating task YAMLs (which asks
the adapter for its schema) stays as light as `mbench ls`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from mbench.errors import MbenchError

if TYPE_CHECKING:
    from mbench.data.types import TaskData
    from mbench.tasks.spec import TaskSpec

T = TypeVar("T")

# The task keys an adapter may claim beyond the common ones; a task whose adapter does not list
# one of them must leave it unset, so a key never sits in a YAML without anything reading it.
OPTION_KEYS = ("dataset_id", "uniir_task_id", "paper_task", "ignore_identical_ids", "hf_dataset", "revision")


class FilesSchema(BaseModel):
    """Base of an adapter's ``files:`` schema: strict (an unknown key is an error), values are relative paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)


HUB_MODULES = ("datasets", "huggingface_hub")
HUB_EXTRA_HINT = 'pip install "mbench[hub]"'


@dataclass(frozen=True)
class LoadRequest:
    """What a load asks for beyond the task: where its folder is, which pool, and how to find other tasks.

    ``folder`` is the task's folder on disk, or None when the data is not there (an adapter that
    ``downloads`` then fetches it from the hub, wrapped in ``from_hub``). ``folder_of`` and
    ``not_found`` answer the same for other tasks (the members of an M-BEIR global pool);
    ``group_members`` lists a group's task specs in group order.
    """

    folder: Path | None
    pool: str
    check_images: bool
    folder_of: Callable[[TaskSpec], Path | None]
    not_found: Callable[[TaskSpec], str]
    group_members: Callable[[str], Sequence[TaskSpec]]

    def from_hub(self, spec: TaskSpec, fetch: Callable[[], T]) -> T:
        """``fetch()``, with a failure that is not already an MbenchError reported as the task's data not being found."""
        try:
            return fetch()
        except MbenchError:
            raise
        except ModuleNotFoundError as err:
            if err.name not in HUB_MODULES:
                raise
            # The hub readers come with the `hub` extra: a setup step to name, not a failure to report.
            raise MbenchError(
                f"{self.not_found(spec)}\n(downloading needs the `{err.name}` package, which is not installed: "
                f"{HUB_EXTRA_HINT} installs datasets and huggingface_hub)"
            ) from None
        except Exception as err:  # network, auth or missing revision: say what failed and how to work offline
            raise MbenchError(f"{self.not_found(spec)}\n(downloading failed: {type(err).__name__}: {err})") from err


@runtime_checkable
class Adapter(Protocol):
    """A dataset layout: ``name`` is the ``adapter:`` value of the tasks it loads."""

    name: str
    files: type[FilesSchema]
    options: frozenset[str]
    downloads: bool

    def load(self, spec: TaskSpec, request: LoadRequest) -> TaskData:
        """Queries, the requested pool and the judgments of ``spec``."""
        ...

    def count(self, spec: TaskSpec, data: TaskData, folder: Path | None) -> int | None:
        """The judgments as ``n_qrels`` counts them (every line of the split's qrels), None without qrels."""
        ...

    def validate(self, spec: TaskSpec, data: TaskData, folder: Path | None) -> list[str]:
        """Problems of the loaded data against the task YAML beyond the common checks (each names what is wrong)."""
        ...

    def how_to_get(self, spec: TaskSpec) -> str:
        """How to get the task's data, the end of a "data not found" error."""
        ...


class FileAdapter:
    """Shared parts of the built-in adapters: typed ``files``, and ``validate`` checking ``n_qrels``."""

    name: str = ""
    files: type[FilesSchema] = FilesSchema
    options: frozenset[str] = frozenset()
    downloads: bool = False

    def files_of(self, spec: TaskSpec) -> Any:
        """The task's ``files:`` as this adapter's typed schema (defaults filled in)."""
        return self.files.model_validate(spec.files)

    def count(self, spec: TaskSpec, data: TaskData, folder: Path | None) -> int | None:
        """The judgments of the split: counted in its qrels file, or the loaded ones for hub data."""
        if data.relevance is None:
            return None
        if folder is None:  # loaded from the hub: the loaded judgments are the source's
            return int(data.relevance.indices.size)
        return self.count_file(spec, folder)

    def count_file(self, spec: TaskSpec, folder: Path) -> int:
        """The judgments in the task's qrels file under ``folder``."""
        raise MbenchError(f"the {self.name} adapter cannot count judgments")

    def validate(self, spec: TaskSpec, data: TaskData, folder: Path | None) -> list[str]:
        """``n_qrels`` of the YAML against the judgments counted in the data."""
        n_qrels = self.count(spec, data, folder)
        if spec.n_qrels is not None and n_qrels is not None and n_qrels != spec.n_qrels:
            return [f"n_qrels: the YAML says {spec.n_qrels}, the qrels have {n_qrels} judgments"]
        return []
