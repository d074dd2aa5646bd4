"""The model registry: lazy built-ins, entry points, module:factory, typed --model-arg validation."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

from mbench.errors import MbenchError
from mbench.models import registry
from mbench.models.registry import build_model, convert_arg, list_models, parse_model_args

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_listing_models_imports_no_torch_and_no_plugin_code() -> None:
    code = (
        "import sys\n"
        "from mbench.models.registry import list_models\n"
        "rows = list_models()\n"
        "assert any(name == 'minilm' for name, _, _ in rows), rows\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'bm25s') if m in sys.modules]\n"
        "plugins = [m for m in sys.modules if m.startswith('mbench.models.builtin.')]\n"
        "assert not heavy and not plugins, (heavy, plugins)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_builtins_and_aliases_are_listed() -> None:
    rows = {name: (desc, source) for name, desc, source in list_models()}
    assert rows["st"][1] == "builtin" and rows["bm25"][1] == "builtin" and rows["hash-embed"][1] == "builtin"
    assert rows["minilm"][1] == "alias of st"
    # Every built-in target names a module and a factory inside mbench.
    for name, builtin in registry.BUILTINS.items():
        module, _, attr = builtin.target.partition(":")
        assert module.startswith("mbench.models.builtin.") and attr, name


def test_parse_model_args() -> None:
    assert parse_model_args(["dim=64", "template=a=b", "empty="]) == {"dim": "64", "template": "a=b", "empty": ""}
    assert parse_model_args(None) == {}
    with pytest.raises(MbenchError, match="expected key=value"):
        parse_model_args(["dim"])
    with pytest.raises(MbenchError, match="given twice"):
        parse_model_args(["dim=1", "dim=2"])


def test_build_builtin_converts_args_by_annotation(tmp_path: Path) -> None:
    model = build_model(
        "hash-embed",
        {"dim": "32", "uses_instructions": "false", "call_log": str(tmp_path / "log.tsv"), "delay": "0.0"},
        device="cpu",
    )
    assert model.dim == 32 and model.meta.dim == 32
    assert model.uses_instructions is False
    assert model.call_log == tmp_path / "log.tsv" and isinstance(model.call_log, Path)
    assert model.meta.name == "hash-embed"


def test_unknown_model_arg_lists_accepted_args() -> None:
    with pytest.raises(MbenchError) as err:
        build_model("hash-embed", {"dimension": "32"})
    message = str(err.value)
    assert "does not accept --model-arg dimension" in message
    assert "dim: int = 256" in message and "nan_ids: str = ''" in message
    assert "device" not in message.split("accepted args:")[1]


def test_bad_values_and_engine_args_are_refused() -> None:
    with pytest.raises(MbenchError, match="--model-arg dim: expected an integer, got 'big'"):
        build_model("hash-embed", {"dim": "big"})
    with pytest.raises(MbenchError, match="expected a boolean"):
        build_model("hash-embed", {"uses_instructions": "maybe"})
    with pytest.raises(MbenchError, match="use the --device option"):
        build_model("hash-embed", {"device": "cuda"})


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(MbenchError, match="unknown model 'nope'.*bm25.*hash-embed.*minilm"):
        build_model("nope", {})


def test_alias_fixed_args_cannot_be_overridden() -> None:
    with pytest.raises(MbenchError, match="fixes name=.*use --model st"):
        build_model("minilm", {"name": "other/model"})


PLUGIN_SOURCE = textwrap.dedent(
    '''
    from __future__ import annotations
    from pathlib import Path
    from typing import Literal
    from mbench.models.base import ModelMeta

    class Toy:
        def __init__(self, checkpoint: Path, scale: float = 1.0, mode: Literal["a", "b"] = "a",
                     limit: int | None = None, device: str = "cpu"):
            self.checkpoint, self.scale, self.mode, self.limit, self.device = checkpoint, scale, mode, limit, device
            self.meta = ModelMeta("toy", "1", "r", {"text"}, {"text"}, 4)

        def encode(self, items, *, role, instructions, prompts):
            raise AssertionError("a factory double: only its signature is inspected, never called")

    def make_toy(**kwargs):
        return Toy(Path("/fixed"), **{k: float(v) for k, v in kwargs.items()})
    '''
)


@pytest.fixture
def toy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "mbench_toy_plugin_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_module_factory_and_required_args(toy_module: str) -> None:
    model = build_model(
        f"{toy_module}:Toy", {"checkpoint": "~/ckpt.pth", "scale": "2.5", "mode": "b", "limit": "none"}, device="cuda:1"
    )
    assert model.checkpoint == Path("~/ckpt.pth").expanduser()
    assert model.scale == 2.5 and model.mode == "b" and model.limit is None and model.device == "cuda:1"
    assert build_model(f"{toy_module}:Toy", {"checkpoint": "c", "limit": "3"}).limit == 3
    with pytest.raises(MbenchError, match="needs --model-arg checkpoint=...; accepted args: checkpoint: Path, scale: float = 1.0"):
        build_model(f"{toy_module}:Toy", {})
    with pytest.raises(MbenchError, match="'c' is not one of 'a', 'b'"):
        build_model(f"{toy_module}:Toy", {"checkpoint": "x", "mode": "c"})
    # **kwargs factories accept any key, unconverted.
    assert build_model(f"{toy_module}:make_toy", {"scale": "3"}).scale == 3.0
    with pytest.raises(MbenchError, match="has no attribute 'Missing'"):
        build_model(f"{toy_module}:Missing", {})
    with pytest.raises(MbenchError, match="cannot import 'no_such_module_xyz'"):
        build_model("no_such_module_xyz:f", {})


def test_entry_points(toy_module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_entry_points(**kwargs):
        calls.append(kwargs)
        return [
            importlib.metadata.EntryPoint(name="toy", value=f"{toy_module}:Toy", group="mbench.models"),
            importlib.metadata.EntryPoint(name="bm25", value=f"{toy_module}:Toy", group="mbench.models"),
        ]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    with pytest.warns(UserWarning, match="'bm25'.*shadowed by the built-in"):
        rows = {name: (desc, source) for name, desc, source in list_models()}
    assert calls and calls[0] == {"group": "mbench.models"}
    assert rows["toy"][1].startswith("entry point") and toy_module in rows["toy"][0]
    assert rows["bm25"][1] == "builtin"
    with pytest.warns(UserWarning):
        model = build_model("toy", {"checkpoint": "c.pth", "scale": "0.5"})
    assert model.scale == 0.5 and model.meta.name == "toy"


def test_broken_entry_point_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [importlib.metadata.EntryPoint(name="broken", value="no_such_pkg_abc:make", group="mbench.models")],
    )
    with pytest.raises(MbenchError, match="model 'broken': loading entry point no_such_pkg_abc:make failed"):
        build_model("broken", {})


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("3", int, 3),
        ("0.25", float, 0.25),
        ("Yes", bool, True),
        ("0", bool, False),
        ("x", str, "x"),
        ("none", int | None, None),
        ("7", int | None, 7),
        ("b", Literal["a", "b"], "b"),
        ("rel/path", Path, Path("rel/path")),
        (5, int, 5),  # Python callers may pass typed values
    ],
)
def test_convert_arg(value, annotation, expected) -> None:
    assert convert_arg(value, annotation, "here") == expected


def test_convert_arg_errors() -> None:
    with pytest.raises(MbenchError, match="here: expected a number"):
        convert_arg("fast", float, "here")
    with pytest.raises(MbenchError, match="not a valid int | None"):
        convert_arg("x", int | None, "here")
