"""Nothing mbench loads can run code: no pickle, weights-only checkpoints, safe YAML, remote code gated.

A scan of the package source, so a new loader that breaks the rule fails here before review.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mbench"
SOURCES = {path.relative_to(PACKAGE).as_posix(): path.read_text() for path in PACKAGE.rglob("*.py")}


def calls(pattern: str) -> dict[str, list[str]]:
    """Per source file, the lines matching ``pattern`` (comments and docstring lines excluded)."""
    found: dict[str, list[str]] = {}
    for name, text in SOURCES.items():
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            if re.search(pattern, code) and not code.strip().startswith(('"', "'")):
                found.setdefault(name, []).append(line.strip())
    return found


def test_no_pickle_is_loaded() -> None:
    assert calls(r"\bimport pickle\b|\bpickle\.|\bdill\b|\bjoblib\b|allow_pickle\s*=\s*True|\bmarshal\.") == {}


def test_every_torch_load_is_weights_only() -> None:
    loads = calls(r"torch\.load\(")
    assert loads == {"models/builtin/clip_sf.py": ["loaded = torch.load(path, map_location=\"cpu\", weights_only=True)"]}


def test_yaml_is_read_by_the_one_safe_reader() -> None:
    assert calls(r"yaml\.(load|unsafe_load|full_load|safe_load)\(") == {
        "formats/specfile.py": ["return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader, C or Python"]
    }
    assert "_Base = getattr(yaml, \"CSafeLoader\", yaml.SafeLoader)" in SOURCES["formats/specfile.py"]


def test_remote_code_is_switched_on_only_behind_the_flag() -> None:
    # mm_embed passes trust_remote_code=True to transformers only after its own opt-in check.
    assert set(calls(r"trust_remote_code\s*=\s*True")) == {"models/builtin/mm_embed.py"}
    assert "if not trust_remote_code:" in SOURCES["models/builtin/mm_embed.py"]
