"""`mbench report`: one self-contained HTML page, checked as a real browser renders it (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mbench.cli import main

TASKS = "mini.beir.towns,mini.mbeir.webqa.t2t,mini.mbeir.cirr.it2i"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of hash-embed (3 tasks, one of them with images) against bm25 (the 2 text tasks)."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MBENCH_CACHE", str(root / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.delenv("MBENCH_DECIMALS", raising=False)
        common = ["--results-dir", str(root / "results"), "--no-progress"]
        assert main(["run", "--model", "bm25", "--tasks", "mini.beir.towns,mini.mbeir.webqa.t2t", *common]) == 0
        assert main(["run", "--model", "hash-embed", "--tasks", TASKS, *common]) == 0
        assert main(["report", str(root / "results"), "--out", str(root / "report.html"), "--resamples", "2000"]) == 0
    return root / "report.html"


def _chromium() -> str:
    """The Chromium binary; skipped (failed under CI) when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "headless Chromium is not installed (Debian: apt-get install chromium); the report's browser test needs it"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI must not skip it)")
    pytest.skip(reason)


def _browser(*args: str) -> str:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _rendered(page: Path, fragment: str = "") -> str:
    """The DOM after the page's scripts ran."""
    return _browser("--dump-dom", page.resolve().as_uri() + fragment)


def _column(dom: str) -> list[str]:
    """Task labels of the comparison table in their displayed order."""
    body = dom.split('<tbody class="tasks">')[1].split("</tbody>")[0]
    return re.findall(r'<th scope="row" class="rowhead"><a href="#[^"]+">([^<]+)</a>', body)


def test_the_page_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from anywhere
    assert "<link" not in text and "<script src" not in text
    images = re.findall(r'<img src="([^"]*)"', text)
    assert images and all(src.startswith("data:image/") for src in images)


def test_the_browser_renders_the_comparison_with_significance_marks(report: Path) -> None:
    dom = _rendered(report)
    assert re.search(r'<html [^>]*data-ready="1"', dom)  # the page's script ran to its end in the browser
    head = dom.split('<table class="comparison" id="comparison">')[1].split("</thead>")[0]
    assert re.findall(r"<th [^>]*>([^<]+)</th>", head) == ["Task", "Metric", "bm25", "hash-embed"]
    assert _column(dom) == ["mini.beir.towns", "mini.mbeir.cirr.it2i", "mini.mbeir.webqa.t2t"]  # task order
    assert re.search(r'<tbody class="averages">\s*<tr><th scope="row" class="rowhead">Mean</th><td class="text">main metrics\*</td>', dom)
    # hash-embed is far below bm25 on mini.beir.towns (ndcg@10 0.30 vs 0.88 over 50 queries): marked
    towns = dom.split('href="#task-mini-beir-towns">mini.beir.towns</a></th>')[1].split("</tr>")[0]
    assert re.search(r'<sup class="sig" title="p = [0-9.e-]+ vs bm25">†</sup>', towns)
    assert "† differs from bm25 with p &lt; 0.05" in dom


def test_sorting_follows_the_address(report: Path) -> None:
    by_hash = _rendered(report, "#sort=3-desc")  # column 3: hash-embed (webqa 85, cirr 55, towns 29.77)
    assert _column(by_hash) == ["mini.mbeir.webqa.t2t", "mini.mbeir.cirr.it2i", "mini.beir.towns"]
    assert re.search(r'<th scope="col" title="sort by this column" aria-sort="descending">hash-embed</th>', by_hash)
    by_bm25 = _rendered(report, "#sort=2-asc")  # bm25: towns 88.22, webqa 100; cirr has none: last either way
    assert _column(by_bm25) == ["mini.beir.towns", "mini.mbeir.webqa.t2t", "mini.mbeir.cirr.it2i"]


def test_each_task_drills_down_to_its_worst_queries_with_items(report: Path) -> None:
    dom = _rendered(report)
    sections = re.findall(r'<section class="task" id="(task-[^"]+)">', dom)
    assert sections == ["task-mini-beir-towns", "task-mini-mbeir-cirr-it2i", "task-mini-mbeir-webqa-t2t"]
    assert len(re.findall(r'<details class="run">', dom)) == 2 + 3  # bm25 on 2 tasks, hash-embed on 3
    cirr = dom.split('id="task-mini-mbeir-cirr-it2i"')[1].split("</section>")[0]
    assert "hash-embed: worst 5 of 20 queries by hit@5" in cirr
    queries = re.findall(r'<div class="query" data-qid="([^"]+)">', cirr)
    assert len(queries) == 5
    # an (image, text) query shows its image and text; retrieved and gold images are thumbnails
    first = cirr.split('<div class="query" ')[1]
    assert first.count('src="data:image/jpeg;base64,') >= 1 + 5 + 1
    assert '<div class="strip-label">top 5 retrieved</div>' in first and '<div class="strip-label">gold (1)</div>' in first
    assert re.search(r'<div class="item relevant" data-id="[^"]+"><span class="id">', first)  # the gold item
    towns = dom.split('id="task-mini-beir-towns"')[1].split("</section>")[0]
    assert '<div class="text" title="town ' in towns  # text queries show their text


def test_every_run_has_its_provenance(report: Path) -> None:
    dom = _rendered(report)
    blocks = re.findall(r'<details class="provenance" id="provenance-[^"]+"><summary>([^<]+)</summary>', dom)
    assert blocks == ["bm25: 2 result(s)", "hash-embed: 3 result(s)"]
    provenance = dom.split('id="provenance"')[1]
    for field in ("result folder", "model", "qrels", "task spec sha256", "mbench, git", "timings (s)"):
        assert provenance.count(f"<th>{field}</th>") == 5


def test_the_screenshot_is_a_full_page(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _browser("--window-size=1400,2400", f"--screenshot={shot}", report.resolve().as_uri())
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 2400)
        # not a blank page: the header band, the table's text and the plot make many colours
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 500


def test_partial_results_are_reported_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path / "cache"))
    results = str(tmp_path / "results")
    assert main(["run", "--model", "hash-embed", "--tasks", "mini.beir.towns", "--results-dir", results,
                 "--no-progress", "--limit", "5"]) == 0
    capsys.readouterr()
    assert main(["report", results, "--out", str(tmp_path / "full.html")]) == 2
    assert "no scored result to report (1 result(s) of another sample left out" in capsys.readouterr().err
    assert main(["report", results, "--out", str(tmp_path / "partial.html"), "--limit", "5"]) == 0
    text = (tmp_path / "partial.html").read_text()
    assert "<title>mbench report (PARTIAL: --limit 5)</title>" in text
    assert '<div class="partial-banner">' in text and "hash-embed [partial: limit 5]" in text
