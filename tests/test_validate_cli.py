"""`mbench validate`: exit 0 only for valid tasks; every problem named by file, line or id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mbench.cli import main

MBEIR_YAML = """\
name: {name}
adapter: mbeir
data_folder: tiny-mbeir
query_modality: text
cand_modality: image
metrics: [hit@1]
main_metric: hit@1
dataset_id: 9
uniir_task_id: 0
n_queries: 2
n_qrels: 2
files:
  queries: query/test/mbeir_tiny_task0_test.jsonl
  qrels: qrels/test/mbeir_tiny_task0_test_qrels.txt
pools:
  local:
    file: cand_pool/local/mbeir_tiny_task0_cand_pool.jsonl
    size: 3
"""


def _tiny_mbeir(root: Path, tasks_dir: Path, name: str = "tiny.t2i") -> Path:
    """A 2-query, 3-image M-BEIR layout and its task YAML."""
    folder = root / "tiny-mbeir"
    for sub in ("query/test", "cand_pool/local", "qrels/test", "mbeir_images/tiny"):
        (folder / sub).mkdir(parents=True)
    pool = []
    for n in (1, 2, 3):
        Image.new("RGB", (8, 8), (40 * n, 0, 0)).save(folder / f"mbeir_images/tiny/{n}.jpg")
        pool.append({"txt": None, "img_path": f"mbeir_images/tiny/{n}.jpg", "modality": "image", "did": f"9:{n}"})
    queries = [{"qid": f"9:{n}", "query_txt": f"caption {n}", "query_img_path": None, "query_modality": "text",
                "pos_cand_list": [f"9:{n}"], "task_id": 0} for n in (1, 2)]
    (folder / "cand_pool/local/mbeir_tiny_task0_cand_pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (folder / "query/test/mbeir_tiny_task0_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels/test/mbeir_tiny_task0_test_qrels.txt").write_text("9:1 0 9:1 1 0\n9:2 0 9:2 1 0\n")
    tasks_dir.mkdir(exist_ok=True)
    (tasks_dir / "tiny.yaml").write_text(MBEIR_YAML.format(name=name))
    return folder


def _validate(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_scifact_is_valid(shared_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = _validate(capsys, "mteb.scifact", "--data-dir", str(shared_dir / "data"))
    assert code == 0, out
    assert "ok   mteb.scifact [local]: 300 queries, 5183 candidates, 339 judgments" in out


def test_tiny_mbeir_task_is_valid_with_every_image_opened(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _tiny_mbeir(tmp_path, tmp_path / "tasks")
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"),
                          "--full")
    assert code == 0, out
    assert "2 queries, 3 candidates, 2 judgments, 3 images opened (all)" in out


def test_unknown_yaml_key_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _tiny_mbeir(tmp_path, tmp_path / "tasks")
    with (tmp_path / "tasks" / "tiny.yaml").open("a") as handle:
        handle.write("colour: red\n")
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"))
    assert code == 2
    assert f"{tmp_path / 'tasks' / 'tiny.yaml'}: colour: unknown key" in out


def test_qrels_id_missing_from_pool_names_line_and_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _tiny_mbeir(tmp_path, tmp_path / "tasks")
    (folder / "qrels/test/mbeir_tiny_task0_test_qrels.txt").write_text("9:1 0 9:1 1 0\n9:2 0 9:77 1 0\n9:2 0 9:78 1 0\n")
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"))
    assert code == 2
    # both unknown ids are listed, not only the first
    assert "mbeir_tiny_task0_test_qrels.txt:2: did '9:77' is not in the local pool of tiny.t2i" in out
    assert "mbeir_tiny_task0_test_qrels.txt:3: did '9:78' is not in the local pool of tiny.t2i" in out


def test_duplicate_did_names_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _tiny_mbeir(tmp_path, tmp_path / "tasks")
    with (folder / "cand_pool/local/mbeir_tiny_task0_cand_pool.jsonl").open("a") as handle:
        handle.write('{"txt": "again", "img_path": null, "modality": "text", "did": "9:2"}\n')
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"))
    assert code == 2
    assert "mbeir_tiny_task0_cand_pool.jsonl:4: duplicate did '9:2' (first at line 2)" in out


def test_missing_image_names_item_and_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _tiny_mbeir(tmp_path, tmp_path / "tasks")
    (folder / "mbeir_images/tiny/3.jpg").unlink()
    (folder / "mbeir_images/tiny/2.jpg").write_bytes(b"not a jpeg")
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"))
    assert code == 2
    assert f"image missing: candidate '9:3': {(folder / 'mbeir_images/tiny/3.jpg').absolute()}" in out
    assert "image unreadable: candidate '9:2'" in out


def test_counts_differing_from_the_yaml_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _tiny_mbeir(tmp_path, tmp_path / "tasks")
    text = (tmp_path / "tasks" / "tiny.yaml").read_text()
    (tmp_path / "tasks" / "tiny.yaml").write_text(text.replace("n_queries: 2", "n_queries: 5").replace("size: 3", "size: 4"))
    code, out = _validate(capsys, "tiny.t2i", "--data-dir", str(tmp_path), "--tasks-dir", str(tmp_path / "tasks"))
    assert code == 2
    assert "n_queries: the YAML says 5, the data has 2 queries with judgments" in out
    assert "pools.local.size: the YAML says 4, the pool has 3 candidates" in out


def test_missing_data_is_a_problem_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = _validate(capsys, "circo.val", "--data-dir", str(tmp_path))
    assert code == 2
    assert f"looked for {(tmp_path / 'circo').absolute()} (--data-dir): not found" in out


def test_validate_imports_no_torch(shared_dir: Path) -> None:
    code = (
        "import sys; from mbench.cli import main; "
        f"rc = main(['validate', 'mteb.scifact', '--data-dir', {str(shared_dir / 'data')!r}]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_hub_task_without_the_hub_libraries_names_the_hub_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the message offered to fetch from the hub, then failed with "No module named 'datasets'".
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ModuleNotFoundError
    code, out = _validate(capsys, "mteb.scifact", "--data-dir", str(tmp_path))
    assert code == 2
    assert "let mbench fetch mteb/scifact@" in out and 'from the hub (needs pip install "mbench[hub]")' in out
    assert ('downloading needs the `datasets` package, which is not installed: pip install "mbench[hub]" '
            "installs datasets and huggingface_hub") in out
    assert "Traceback" not in out


def test_the_generated_mini_benchmark_validates_clean(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Regression: OVEN/InfoSeek judgments on the other dataset's candidates were warned about as
    # "dropped"; leaving them out of the local pool is M-BEIR's rule, so they are counted instead.
    code, out = _validate(capsys, "mini", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, out
    assert "warning" not in out
    assert out.count("\nok   ") + out.startswith("ok   ") == 18
    assert ("ok   mini.mbeir.oven.it2t [local]: 20 queries, 50 candidates, "
            "22 judgments (2 on the other dataset's candidates: global pool only)") in out
