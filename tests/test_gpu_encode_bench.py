"""bench/gpu_encode_bench.py in its CPU mode: the script the GPU suite runs works end to end."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_bench():  # -> module
    spec = importlib.util.spec_from_file_location("gpu_encode_bench", REPO / "bench" / "gpu_encode_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_mode_reports_every_configuration_with_its_throughput(tmp_path: Path) -> None:
    bench = _load_bench()
    out = tmp_path / "encode.md"
    argv = ["--device", "cpu", "--size", "tiny", "--repeats", "1", "--num-workers", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    report = out.read_text()
    rows = [line for line in report.splitlines() if re.match(r"\| tiny (BERT|CLIP)", line)]
    # One text-encoder batch size, one CLIP batch size with images and captions.
    assert [row.split("|")[1].strip() for row in rows] == [
        "tiny BERT, passages of 64 words", "tiny CLIP, JPEG images", "tiny CLIP, captions of 16 words",
    ]
    sizes = bench.SIZES["tiny"]
    assert [int(row.split("|")[4]) for row in rows] == [sizes.texts, sizes.images, sizes.captions]
    assert all(float(row.split("|")[6].replace(",", "")) > 0 for row in rows)
    # Every passage word is one token, plus [CLS] and [SEP]; captions are 16 merged words + 2 specials.
    assert "mean 66.0 tokens per passage" in report and "mean 18.0 tokens per caption" in report
    assert "| device | cpu |" in report and "| dtype | fp32 |" in report
