"""Task definitions: the TaskSpec schema, the YAML loader with `include:`, and the task index."""

from mbench.tasks.index import (
    ENTRY_POINT_GROUP,
    TaskIndex,
    clear_cache,
    expand_task_names,
    get_index,
    list_groups,
    list_tasks,
    load_group_spec,
    load_task_spec,
    packaged_tasks_dir,
    task_source,
)
from mbench.tasks.loader import TaskFileError, load_task_file
from mbench.tasks.spec import GroupSpec, PoolSpec, TaskSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "GroupSpec",
    "PoolSpec",
    "TaskFileError",
    "TaskIndex",
    "TaskSpec",
    "clear_cache",
    "expand_task_names",
    "get_index",
    "list_groups",
    "list_tasks",
    "load_group_spec",
    "load_task_file",
    "load_task_spec",
    "packaged_tasks_dir",
    "task_source",
]
