"""The task YAML loader and index: includes, errors that name file and key, groups, sources."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from mbench.errors import MbenchError
from mbench.tasks import index as task_index
from mbench.tasks.index import build_index, clear_cache, expand_task_names, get_index, load_task_spec
from mbench.tasks.loader import TaskFileError, load_file, load_task_file

REPO_ROOT = Path(__file__).resolve().parents[1]

BASE = """\
adapter: beir
data_folder: toy
query_modality: text
cand_modality: text
files: {queries: queries.jsonl, qrels: qrels/test.tsv}
pools:
  global: {union_of: toys, size: 10}
metrics: [ndcg@10, recall@10]
main_metric: ndcg@10
"""


def write(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _fresh_index():
    clear_cache()
    yield
    clear_cache()


def test_include_merges_mappings_and_local_keys_override(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    task = write(
        tmp_path,
        "a.yaml",
        """\
        include: _base.yaml
        name: toy.a
        metrics: [recall@10, mrr@10]
        main_metric: mrr@10
        files: {qrels: qrels/dev.tsv}
        pools:
          local: {file: corpus.jsonl, size: 4}
        """,
    )
    spec = load_task_file(task)
    assert spec.adapter == "beir"  # inherited
    assert spec.metrics == ["recall@10", "mrr@10"]  # a list is replaced whole
    assert spec.main_metric == "mrr@10"
    assert spec.files == {"queries": "queries.jsonl", "qrels": "qrels/dev.tsv"}  # mapping merged key by key
    assert set(spec.pools) == {"global", "local"}
    assert spec.pools["global"].union_of == "toys"
    assert spec.pools["local"].size == 4


def test_include_chain_resolves_relative_to_each_including_file(tmp_path: Path) -> None:
    write(tmp_path, "_root.yaml", BASE)
    write(tmp_path, "family/_family.yaml", "include: ../_root.yaml\ndepth: 500\nsplit: dev\n")
    task = write(tmp_path, "family/deep/t.yaml", "include: ../_family.yaml\nname: toy.deep\nsplit: test\n")
    spec = load_task_file(task)
    assert (spec.data_folder, spec.depth, spec.split) == ("toy", 500, "test")


def test_null_removes_an_inherited_key_so_the_default_applies(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE + "depth: 1000\n")
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\ndepth: null\n")
    assert load_task_file(task).depth == 100


def test_include_cycle_is_an_error_showing_the_cycle(tmp_path: Path) -> None:
    write(tmp_path, "_a.yaml", "include: _b.yaml\n")
    write(tmp_path, "_b.yaml", "include: _a.yaml\n")
    task = write(tmp_path, "t.yaml", "include: _a.yaml\nname: toy.t\n")
    with pytest.raises(TaskFileError, match=r"include: include cycle .*_a\.yaml -> .*_b\.yaml -> .*_a\.yaml"):
        load_task_file(task)


def test_missing_include_names_the_file_and_the_include_key(tmp_path: Path) -> None:
    task = write(tmp_path, "t.yaml", "include: _nowhere.yaml\nname: toy.t\n")
    with pytest.raises(TaskFileError) as err:
        load_task_file(task)
    assert str(err.value).startswith(f"{task}: include: no such file")
    assert "_nowhere.yaml" in str(err.value)


def test_unknown_key_error_names_file_key_and_close_match(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\nmain_metrc: recall@10\n")
    with pytest.raises(TaskFileError) as err:
        load_task_file(task)
    assert str(err.value).startswith(f"{task}: main_metrc: unknown key (did you mean 'main_metric'?)")


def test_unknown_key_set_in_a_base_names_the_base(tmp_path: Path) -> None:
    base = write(tmp_path, "_base.yaml", BASE + "colour: blue\n")
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\n")
    with pytest.raises(TaskFileError, match=rf"colour: unknown key.*\(inherited from {base}\)"):
        load_task_file(task)


def test_unknown_nested_pool_key_names_the_dotted_key(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\npools: {local: {file: c.jsonl, sise: 3}}\n")
    with pytest.raises(TaskFileError, match=r"pools\.local\.sise: unknown key \(did you mean 'size'\?\)"):
        load_task_file(task)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    task = write(tmp_path, "t.yaml", "name: toy.t\nmetrics: [ndcg@10\nadapter: beir\n")
    with pytest.raises(TaskFileError, match=rf"^{task}:\d+: malformed YAML"):
        load_task_file(task)


def test_schema_violation_names_the_key(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\ndepth: 0\n")
    with pytest.raises(TaskFileError, match=rf"^{task}: depth: Input should be greater than or equal to 1"):
        load_task_file(task)


def test_unscored_task_has_no_metrics(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    ok = write(
        tmp_path, "ok.yaml", "include: _base.yaml\nname: toy.sub\nscored: false\nmetrics: null\nmain_metric: null\n"
    )
    spec = load_task_file(ok)
    assert (spec.scored, spec.metrics, spec.main_metric) == (False, [], None)
    bad = write(tmp_path, "bad.yaml", "include: _base.yaml\nname: toy.bad\nscored: false\n")
    with pytest.raises(TaskFileError, match="`scored: false` has no metrics"):
        load_task_file(bad)


def test_duplicate_task_name_error_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    first = write(tmp_path, "a/one.yaml", "include: ../_base.yaml\nname: toy.same\n")
    second = write(tmp_path, "b/two.yaml", "include: ../_base.yaml\nname: toy.same\n")
    with pytest.raises(TaskFileError) as err:
        build_index([tmp_path])
    assert str(second) in str(err.value) and str(first) in str(err.value)


def test_base_files_are_never_tasks(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE + "name: toy.base\n")
    write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\n")
    write(tmp_path, "toys.yaml", "group: toys\ntasks: [toy.t]\n")
    assert list(build_index([tmp_path]).tasks) == ["toy.t"]


def _toy_tree(root: Path) -> None:
    write(root, "_base.yaml", BASE)
    for name in ("a", "b", "c"):
        write(root, f"{name}.yaml", f"include: _base.yaml\nname: toy.{name}\n")
    write(root, "toys.yaml", "group: toys\ntasks: [toy.ab, toy.c]\n")
    write(root, "ab.yaml", "group: toy.ab\ntasks: [toy.b, toy.a, toy.b]\n")


def test_groups_expand_recursively_in_order_without_repeats(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    index = build_index([tmp_path])
    assert index.expand(["toys"]) == ["toy.b", "toy.a", "toy.c"]
    assert index.expand(["toy.c", "toy.ab"]) == ["toy.c", "toy.b", "toy.a"]


def test_glob_pattern_expands_to_matching_tasks(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    assert build_index([tmp_path]).expand(["toy.[ab]"]) == ["toy.a", "toy.b"]


def test_unknown_name_error_suggests_a_close_match(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    with pytest.raises(MbenchError, match=r"unknown task or group 'toyz' \(did you mean toys"):
        build_index([tmp_path]).expand(["toyz"])


def test_unknown_name_error_names_the_file_of_the_closest_task(tmp_path: Path) -> None:
    # A typo in a task's own `name:` leaves the intended name unknown: the error points at that YAML.
    _toy_tree(tmp_path)
    write(tmp_path, "d.yaml", "include: _base.yaml\nname: toy.dd\n")
    write(tmp_path, "toys.yaml", "group: toys\ntasks: [toy.ab, toy.c, toy.dd]\n")
    with pytest.raises(MbenchError) as err:
        build_index([tmp_path]).expand(["toy.d"])
    assert f"unknown task or group 'toy.d' (did you mean toy.dd (defined in {tmp_path / 'd.yaml'})" in str(err.value)


def test_group_cycle_is_an_error(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    write(tmp_path, "loop1.yaml", "group: loop1\ntasks: [toy.a, loop2]\n")
    write(tmp_path, "loop2.yaml", "group: loop2\ntasks: [loop1]\n")
    with pytest.raises(MbenchError, match=r"group cycle loop\d -> loop\d -> loop\d"):
        build_index([tmp_path])


def test_group_member_that_does_not_exist_names_file_and_position(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    bad = write(tmp_path, "bad.yaml", "group: bad\ntasks: [toy.a, toy.zz]\n")
    with pytest.raises(MbenchError, match=rf"{bad}: tasks\.1: unknown task or group 'toy\.zz'"):
        build_index([tmp_path])


def test_union_pool_must_name_a_group_containing_the_task(tmp_path: Path) -> None:
    write(tmp_path, "_base.yaml", BASE)
    task = write(tmp_path, "t.yaml", "include: _base.yaml\nname: toy.t\n")
    write(tmp_path, "toys.yaml", "group: toys\ntasks: [toy.other]\n")
    write(tmp_path, "other.yaml", "include: _base.yaml\nname: toy.other\n")
    with pytest.raises(MbenchError, match=rf"{task}: pools\.global\.union_of: task 'toy\.t' is not in group 'toys'"):
        build_index([tmp_path])


def test_extra_tasks_dir_adds_to_the_packaged_tasks(tmp_path: Path) -> None:
    _toy_tree(tmp_path)
    assert expand_task_names(["toys", "mteb.scifact"], tasks_dirs=[tmp_path]) == [
        "toy.b",
        "toy.a",
        "toy.c",
        "mteb.scifact",
    ]
    assert load_task_spec("toy.a", tasks_dirs=[tmp_path]).data_folder == "toy"
    with pytest.raises(MbenchError, match="unknown task 'toy.a'"):
        load_task_spec("toy.a")


def test_extra_tasks_dir_redefining_a_packaged_task_is_an_error(tmp_path: Path) -> None:
    own_pool = BASE.replace("global: {union_of: toys, size: 10}", "corpus: {file: corpus.jsonl}")
    clash = write(tmp_path, "clash.yaml", own_pool + "name: mteb.scifact\n")
    with pytest.raises(TaskFileError, match=rf"{clash}: name: 'mteb.scifact' is already defined in .*scifact\.yaml"):
        get_index([tmp_path])


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    real = importlib.metadata.entry_points
    ep = importlib.metadata.EntryPoint(name="toy-plugin", value=value, group=task_index.ENTRY_POINT_GROUP)

    def entry_points(**params):
        if params.get("group") == task_index.ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([ep])
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point_to_a_module_contributes_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toy_tree(tmp_path / "toy_task_pkg")
    write(tmp_path, "toy_task_pkg/__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake_entry_points(monkeypatch, "toy_task_pkg")
    assert expand_task_names(["toys"]) == ["toy.b", "toy.a", "toy.c"]


def test_entry_point_to_a_path_attribute_contributes_that_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toy_tree(tmp_path / "yamls")
    write(tmp_path, "toy_task_paths.py", f"TASKS_DIR = {str(tmp_path / 'yamls')!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake_entry_points(monkeypatch, "toy_task_paths:TASKS_DIR")
    assert load_task_spec("toy.c").name == "toy.c"


def test_broken_entry_point_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, "no_such_module_for_mbench_tests")
    with pytest.raises(MbenchError, match=r"entry point 'toy-plugin' = 'no_such_module_for_mbench_tests'.*cannot load"):
        get_index()


def test_packaged_tasks_dir_in_a_source_checkout_is_the_repository_tasks() -> None:
    assert task_index.packaged_tasks_dir() == REPO_ROOT / "tasks"


def test_index_of_packaged_tasks_builds_fast() -> None:
    start = time.perf_counter()
    index = build_index([task_index.packaged_tasks_dir()])
    elapsed = time.perf_counter() - start
    assert len(index.tasks) >= 44
    assert elapsed < 0.5, f"parsing the packaged task YAMLs took {elapsed:.2f}s"


def test_every_file_error_is_an_mbench_error(tmp_path: Path) -> None:
    # The CLI turns MbenchError into exit code 2 with the message; a loader error must be one.
    task = write(tmp_path, "t.yaml", "- just\n- a list\n")
    with pytest.raises(MbenchError, match="expected a mapping of keys at the top level"):
        load_file(task)


@pytest.mark.slow
def test_wheel_contains_the_task_yamls(tmp_path: Path) -> None:
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-build-isolation"]  # offline when the backend is already installed
    except ImportError:
        isolation = []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "-q", "-w", str(tmp_path), *isolation],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("mbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"mbench/_packaged/tasks/{p.relative_to(REPO_ROOT / 'tasks').as_posix()}"
        for p in (REPO_ROOT / "tasks").rglob("*.yaml")
    }
    assert "mbench/_packaged/tasks/mbeir/_mbeir_test.yaml" in expected
    assert "mbench/_packaged/tasks/mteb/scifact.yaml" in expected
    assert expected <= names, sorted(expected - names)[:5]

    # Installed from the wheel (unpacked onto the path ahead of the editable install), the index is the same.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import mbench, mbench.tasks as t; "
        "print(mbench.__file__); print(t.packaged_tasks_dir()); print(len(t.get_index().tasks))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    module_file, tasks_dir, n_tasks = shown.stdout.split()
    assert module_file.startswith(str(site)) and tasks_dir == str(site / "mbench" / "_packaged" / "tasks")
    assert int(n_tasks) == len(get_index().tasks)
