"""Every built-in family passes `mbench check-model` on the mini benchmark (issue 5's done-when).

Model families that need weights run on tiny random models saved with `save_pretrained` and
loaded through the plugin's real `from_pretrained` path; MiniLM uses its real offline weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
from test_plugin_mm_embed import _write_remote_code_model
from test_reranker_cross_encoder import build_tiny_cross_encoder

from mbench.cli import main
from mbench.models.builtin.sentence_transformers import packaged_minilm_dir


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {
        "clip": tiny_models.build_tiny_clip(root / "clip"),
        "llava_mistral": tiny_models.build_tiny_llava_next(root / "llava-mistral"),
        "llava_llama3": tiny_models.build_tiny_llava_next(root / "llava-llama3", chat_format="llama3"),
        "mm_embed": _write_remote_code_model(root / "mm-embed", "TinyMMEmbedModel"),
        "cross_encoder": build_tiny_cross_encoder(root / "cross-encoder"),
    }


FAMILIES = {
    "hash-embed": ("hash-embed", lambda w: []),
    "minilm": ("minilm", lambda w: []),
    "bm25": ("bm25", lambda w: []),
    "clip-sf": ("clip-sf", lambda w: [f"name={w['clip']}"]),
    "llava-e": ("llava-next", lambda w: [f"name={w['llava_mistral']}", "pooling=eos"]),
    "llava-p": ("llava-next", lambda w: [f"name={w['llava_mistral']}", "pooling=prompt"]),
    "llava-e-global": ("llava-next", lambda w: [f"name={w['llava_mistral']}", "global_image_only=true"]),
    "e5v": ("e5v", lambda w: [f"name={w['llava_llama3']}"]),
    "mm-embed": ("mm-embed", lambda w: [f"name={w['mm_embed']}"]),
    "llava-next-tf": ("llava-next-tf", lambda w: [f"name={w['llava_mistral']}"]),
    "cross-encoder": ("cross-encoder", lambda w: [f"name={w['cross_encoder']}"]),
    "mteb": ("mteb", lambda w: ["name=sentence-transformers/all-MiniLM-L6-v2", f"path={packaged_minilm_dir()}"]),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_passes_the_conformance_check(family, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name, args = FAMILIES[family]
    argv = ["check-model", name, "--per-modality", "3", "--batch-sizes", "1,4", "--cache-dir", str(tmp_path)]
    for arg in args(weights):
        argv += ["--model-arg", arg]
    if name == "mm-embed":  # it runs the checkpoint's own modeling code
        argv.append("--trust-remote-code")
    code = main(argv)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "FAIL" not in report
