"""`mbench ls`: names for scripts, tables for people, and no heavy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mbench.cli import main
from mbench.tasks.index import clear_cache

MBEIR_16 = [
    "mbeir.cirr.it2i", "mbeir.edis.t2it", "mbeir.fashion200k.i2t", "mbeir.fashion200k.t2i",
    "mbeir.fashioniq.it2i", "mbeir.infoseek.it2it", "mbeir.infoseek.it2t", "mbeir.mscoco.i2t",
    "mbeir.mscoco.t2i", "mbeir.nights.i2i", "mbeir.oven.it2it", "mbeir.oven.it2t",
    "mbeir.visualnews.i2t", "mbeir.visualnews.t2i", "mbeir.webqa.t2it", "mbeir.webqa.t2t",
]  # fmt: skip
MTEB_14 = [
    "mteb.arguana", "mteb.climatefever", "mteb.dbpedia", "mteb.fever", "mteb.fiqa2018", "mteb.hotpotqa",
    "mteb.msmarco", "mteb.nfcorpus", "mteb.nq", "mteb.quora", "mteb.scidocs", "mteb.scifact",
    "mteb.touche2020", "mteb.treccovid",
]  # fmt: skip
SUBFORUMS = "android english gaming gis mathematica physics programmers stats tex unix webmasters wordpress".split()


@pytest.fixture(autouse=True)
def _fresh_index():
    clear_cache()
    yield
    clear_cache()


def ls(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["ls", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_tasks_names_lists_mbeir_mteb_cqadupstack_and_circo(capsys) -> None:
    code, out, _ = ls(capsys, "tasks", "--names")
    names = out.splitlines()
    assert code == 0
    assert [n for n in names if n.startswith("mbeir.")] == MBEIR_16
    assert [n for n in names if n.startswith("mteb.") and ".cqadupstack." not in n] == MTEB_14
    assert [n for n in names if n.startswith("mteb.cqadupstack.")] == [f"mteb.cqadupstack.{s}" for s in SUBFORUMS]
    assert [n for n in names if n.startswith("circo.")] == ["circo.test", "circo.val"]


def test_ls_names_prints_names_only(capsys) -> None:
    _, out, err = ls(capsys, "tasks", "--names")
    assert err == ""
    assert all(line and " " not in line for line in out.splitlines())
    assert out.endswith("\n") and not out.endswith("\n\n")


def test_ls_tasks_table_shows_adapter_modalities_main_metric_and_queries(capsys) -> None:
    code, out, _ = ls(capsys, "tasks")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["name", "adapter", "modality", "q", "->", "c", "main", "metric", "n_queries"]
    (cirr,) = [line for line in lines if line.startswith("mbeir.cirr.it2i ")]
    assert cirr.split() == ["mbeir.cirr.it2i", "mbeir", "image,text", "->", "image", "hit@5", "4,170"]
    (circo_test,) = [line for line in lines if line.startswith("circo.test ")]
    assert "(submission)" in circo_test


def test_ls_groups_names(capsys) -> None:
    _, out, _ = ls(capsys, "groups", "--names")
    expected = {"circo", "mbeir", "mbeir.multi_modal", "mbeir.single_modal", "mteb.cqadupstack", "mteb.retrieval15"}
    assert expected <= set(out.splitlines())


def test_ls_groups_table_counts_members_and_expanded_tasks(capsys) -> None:
    _, out, _ = ls(capsys, "groups")
    (row,) = [line for line in out.splitlines() if line.startswith("mteb.retrieval15 ")]
    assert row.split()[1:4] == ["15", "26", "mean"]


def test_ls_tasks_dir_adds_tasks(tmp_path: Path, capsys) -> None:
    (tmp_path / "extra.yaml").write_text(
        textwrap.dedent(
            """\
            name: local.extra
            adapter: beir
            data_folder: extra
            query_modality: text
            cand_modality: text
            metrics: [ndcg@10]
            main_metric: ndcg@10
            """
        )
    )
    _, out, _ = ls(capsys, "tasks", "--names", "--tasks-dir", str(tmp_path))
    assert "local.extra" in out.splitlines()


def test_ls_tasks_dir_that_does_not_exist_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    code, _, err = ls(capsys, "tasks", "--tasks-dir", str(tmp_path / "nope"))
    assert code == 2
    assert f"--tasks-dir {tmp_path / 'nope'}: no such directory" in err


def test_ls_broken_task_yaml_exits_2_naming_file_and_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: local.bad\nadapter: beir\ndata_folder: x\nquery_modality: text\ncand_modality: text\n"
                   "metrics: [ndcg@10]\nmain_metric: ndcg@10\nsplitt: dev\n")  # fmt: skip
    code, _, err = ls(capsys, "tasks", "--tasks-dir", str(tmp_path))
    assert code == 2
    assert f"{bad}: splitt: unknown key (did you mean 'split'?)" in err


def test_ls_models_names_come_from_the_registry(capsys) -> None:
    from mbench.models.registry import list_models

    code, out, _ = ls(capsys, "models", "--names")
    assert code == 0
    assert out.splitlines() == [row[0] for row in list_models()]


def test_ls_models_without_a_registry_exits_2_with_a_clear_message(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mbench.models.registry", None)  # makes the import fail
    code, _, err = ls(capsys, "models")
    assert code == 2
    assert "model registry (mbench.models.registry) is not part of this install" in err


@pytest.mark.parametrize("argv", [["--help"], ["ls"], ["ls", "groups"], ["ls", "models"]])
def test_light_commands_import_no_torch(argv: list[str]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from mbench.cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        heavy = sorted(m for m in ("torch", "transformers", "PIL", "open_clip") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
