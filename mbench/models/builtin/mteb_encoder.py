"""mteb's model zoo as mbench retrievers: ``--model mteb --model-arg name=<mteb model name>`` (or ``mteb:<name>``).

The model is looked up in mteb's registry (its ``ModelMeta``) and built by mteb's own loader, so
it encodes as it does under mteb: every ``encode`` call becomes a call of mteb's encoder
protocol with a DataLoader made by mteb's ``create_dataloader``, the prompt type of the role
(query or document) and a ``TaskMetadata`` whose ``prompt`` carries the query's instruction, the
way mteb hands a retrieval task's instruction to an instruction-following model. Modalities are
the ones mteb declares for the model: text, image, and image+text when it has both.

Offline only: the weights come from ``path=<local dir>`` or from the Hugging Face cache at the
revision mteb pins for the model; nothing is downloaded. The model's own task-name-keyed prompts
(if any) never match, because mbench does not tell a plugin which task it encodes for: the
instruction mbench's policy resolves is what the model gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.checked_json import dumps_checked, loads_checked
from mbench.models.base import ModelMeta, Role, check_encode_call, directory_digest, load_image
from mbench.models.builtin.hub import resolve_model_dir

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata

PLUGIN_VERSION = "1"

# mbench's modalities as one side of an mteb task category ("t2t", "i2i", "it2it").
_CATEGORY_SIDE = {"text": "t", "image": "i", "image,text": "it"}
# The name of the task mteb's encoders see; it names no mteb task, so no task-keyed prompt matches it.
TASK_NAME = "MbenchRetrieval"


def mteb_version() -> str:
    """The installed mteb version (a clear error when mteb is missing)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        raise MbenchError('the mteb family needs mteb: pip install "mbench[mteb]"') from None


def lookup_mteb_meta(name: str) -> Any:
    """mteb's ``ModelMeta`` of ``name`` from its registry (never from the hub); an unknown name lists close ones."""
    mteb_version()
    import mteb

    try:
        return mteb.get_model_meta(name, fetch_from_hf=False)
    except KeyError as err:
        raise MbenchError(f"mteb: {err.args[0] if err.args else err} (mbench only loads models mteb registers)") from None


@dataclass(frozen=True)
class MtebFacts:
    """What mbench needs from an mteb ``ModelMeta`` to build the retriever (attribute names as mteb's)."""

    name: str
    revision: str | None
    modalities: tuple[str, ...]
    embed_dim: int | None
    similarity_fn_name: str | None
    use_instructions: bool
    model_type: tuple[str, ...]
    remote_code: bool

    @classmethod
    def of(cls, mteb_meta: Any) -> MtebFacts:
        """The facts of an mteb ``ModelMeta``."""
        value = mteb_meta.similarity_fn_name
        embed_dim = mteb_meta.embed_dim
        return cls(
            name=str(mteb_meta.name),
            revision=None if mteb_meta.revision is None else str(mteb_meta.revision),
            modalities=tuple(str(m) for m in mteb_meta.modalities),
            embed_dim=embed_dim if isinstance(embed_dim, int) else None,
            similarity_fn_name=None if value is None else str(getattr(value, "value", value)),
            use_instructions=bool(mteb_meta.use_instructions),
            model_type=tuple(str(t) for t in mteb_meta.model_type),
            remote_code=bool((mteb_meta.loader_kwargs or {}).get("trust_remote_code")),
        )


def _snapshot_path(name: str, version: str) -> Path:
    from mbench.engine.cache import cache_root

    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return cache_root() / "mteb-registry" / version / f"{digest}.json"


def lookup_mteb_facts(name: str) -> MtebFacts:
    """The registry facts of ``name``, from this mteb version's snapshot or (first time) mteb's registry.

    Importing mteb takes seconds; a run served from the embedding cache needs only these facts
    (for the fingerprint and the checks), so they are kept per installed mteb version and model
    name, under the mbench cache root (``$MBENCH_CACHE``). A missing or unreadable snapshot is
    rebuilt from mteb's registry.
    """
    version = mteb_version()
    path = _snapshot_path(name, version)
    try:
        record = loads_checked(path.read_bytes())
        if record.get("query") == name and record.get("mteb_version") == version:
            fields = record["facts"]
            return MtebFacts(**{**fields, "modalities": tuple(fields["modalities"]),
                                "model_type": tuple(fields["model_type"])})
    except (OSError, ValueError, KeyError, TypeError):  # ChecksumError is a ValueError
        pass  # no snapshot yet, or a damaged one (its checksum tells): ask mteb
    facts = MtebFacts.of(lookup_mteb_meta(name))
    record = {"query": name, "mteb_version": version, "facts": dataclasses.asdict(facts)}
    with contextlib.suppress(OSError, MbenchError):  # a read-only or full cache only costs the next run the import
        atomic_write_bytes(path, dumps_checked(record))
    return facts


def declared_modalities(facts: MtebFacts) -> frozenset[str]:
    """mbench modalities of an mteb model: its text and image, and image+text (fused) when it has both."""
    have = {"text", "image"} & set(facts.modalities)
    if not have:
        raise MbenchError(
            f"mteb model {facts.name!r} encodes {sorted(facts.modalities)}; mbench evaluates text and images only"
        )
    return frozenset(have | ({"image,text"} if have == {"text", "image"} else set()))


def similarity_of(facts: MtebFacts) -> str:
    """``cosine`` or ``dot`` from mteb's ``similarity_fn_name`` (unset means cosine, mteb's default)."""
    name = facts.similarity_fn_name
    if name in (None, "cosine"):
        return "cosine"
    if name == "dot":
        return "dot"
    raise MbenchError(f"mteb model {facts.name!r} scores with {name!r}; mbench searches by cosine or dot product only")


class MtebRetriever:
    """A dense mteb encoder behind mbench's Retriever contract."""

    def __init__(
        self,
        name: str,
        path: Path | None = None,
        batch_size: int = 32,
        trust_remote_code: bool = False,
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise MbenchError(f"mteb: batch_size must be >= 1, got {batch_size}")
        facts, self.model_dir, revision = resolve_mteb_model(name, path, trust_remote_code=trust_remote_code)
        modalities = declared_modalities(facts)
        self.facts, self.device, self.trust_remote_code = facts, device, trust_remote_code
        self._model: Any = None
        self.batch_size = batch_size
        self._tasks: dict[tuple[str, str | None], TaskMetadata] = {}
        self.meta = ModelMeta(
            name=facts.name,
            version=PLUGIN_VERSION,
            revision=revision,
            query_modalities=modalities,
            cand_modalities=modalities,
            dim=facts.embed_dim,
            similarity=similarity_of(facts),  # type: ignore[arg-type]
            prompt_family=None,
            uses_instructions=facts.use_instructions,
            output_args={
                "mteb_model": facts.name,
                "mteb_revision": facts.revision,
                "mteb_version": mteb_version(),
            },
        )

    @property
    def model(self) -> Any:
        """mteb's encoder, built on first use: a run whose embeddings are all in the cache never loads the weights."""
        if self._model is None:
            mteb_meta = lookup_mteb_meta(self.facts.name)  # imports mteb: only when something is encoded
            self._model = _load(mteb_meta, self.model_dir, device=self.device, trust_remote_code=self.trust_remote_code)
        return self._model

    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Embeddings [len(items), dim] (float32; unit rows for a cosine model) from mteb's ``encode``, one call per modality and instruction."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        from mteb.types import PromptType

        prompt_type = PromptType.query if role == "query" else PromptType.document
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, item in enumerate(items):
            instruction = instructions[i] if role == "query" else None
            groups.setdefault((item.modality, instruction), []).append(i)
        out: torch.Tensor | None = None
        for (modality, instruction), rows in groups.items():
            task = self._task(modality, instruction)
            embeddings = _as_float_tensor(self._encode_group([items[i] for i in rows], modality, task, prompt_type))
            if out is None:
                out = torch.empty(len(items), embeddings.shape[1], dtype=torch.float32)
            out[rows] = embeddings
        if out is None:
            return torch.empty(0, self.meta.dim or 0)
        if self.meta.similarity == "cosine":
            # mteb scores a cosine model by normalising both sides at search time (its encoders may
            # return raw rows); mbench stores unit rows for cosine models, so the normalisation
            # mteb would apply is applied here, once, in float32 as mteb's cos_sim does.
            out = torch.nn.functional.normalize(out, dim=1)
        return out

    def _encode_group(self, items: list[Item], modality: str, task: TaskMetadata, prompt_type: Any) -> Any:
        import datasets
        from mteb._create_dataloaders import create_dataloader

        columns: dict[str, list[Any]] = {"id": [item.id for item in items]}
        features = {"id": datasets.Value("string")}
        if "text" in modality.split(","):
            columns["text"] = [item.text for item in items]
            features["text"] = datasets.Value("string")
        if "image" in modality.split(","):
            columns["image"] = [load_image(item) for item in items]
            features["image"] = datasets.Image()
        # mteb prepares each batch with datasets' map(); one progress bar per engine batch would drown the run's own.
        bars_were_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            with warnings.catch_warnings():
                # Items without an instruction (candidates, policy `none`) are meant to get none: mteb's
                # note that the task defines no prompt describes the intended state, not a problem.
                warnings.filterwarnings("ignore", message=f"No prompt found on the abstask class of task '{TASK_NAME}'")
                dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
                loader = create_dataloader(dataset, task_metadata=task, prompt_type=prompt_type, batch_size=self.batch_size)
                return self.model.encode(
                    loader, task_metadata=task, hf_split="test", hf_subset="default", prompt_type=prompt_type,
                    batch_size=self.batch_size, show_progress_bar=False,
                )
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()

    def _task(self, modality: str, instruction: str | None) -> TaskMetadata:
        """The retrieval TaskMetadata mteb's encoder sees for items of ``modality`` given ``instruction``."""
        key = (modality, instruction)
        if key not in self._tasks:
            from mteb import TaskMetadata

            side = _CATEGORY_SIDE[modality]
            self._tasks[key] = TaskMetadata(
                name=TASK_NAME,
                description="a retrieval task evaluated by mbench",
                type="Retrieval",
                category=f"{side}2{side}",  # type: ignore[arg-type]
                modalities=modality.split(","),  # type: ignore[arg-type]
                eval_langs=["eng-Latn"],  # mteb requires one; every task mbench ships is English
                main_score="ndcg_at_10",
                dataset={"path": "mbench/task", "revision": "none"},
                prompt=None if instruction is None else {"query": instruction},
            )
        return self._tasks[key]


def load_mteb_model(
    name: str, path: Path | None = None, *, device: str = "cpu", trust_remote_code: bool = False
) -> tuple[Any, str]:
    """mteb's encoder for the registered dense model ``name``, built by mteb's loader from ``path`` or the HF cache.

    Returns the model and the revision of its weights (the cached hub commit, or a content digest of
    ``path``). The model carries mteb's registry ``ModelMeta``, as ``mteb.get_model`` would give it.
    """
    facts, model_dir, revision = resolve_mteb_model(name, path, trust_remote_code=trust_remote_code)
    return _load(lookup_mteb_meta(facts.name), model_dir, device=device, trust_remote_code=trust_remote_code), revision


def resolve_mteb_model(
    name: str, path: Path | None = None, *, trust_remote_code: bool = False
) -> tuple[MtebFacts, Path, str]:
    """mteb's registry facts of a dense model mbench can run, the directory of its weights and their revision.

    Everything that can be refused is refused here, before any weights load: an unknown name, a
    model that is not dense, remote code without consent, no text or image, a similarity mbench
    cannot search with, weights neither at ``path`` nor in the Hugging Face cache.
    """
    facts = lookup_mteb_facts(name)
    if "dense" not in facts.model_type:
        raise MbenchError(
            f"mteb model {name!r} is a {'/'.join(facts.model_type)} model; the mteb family runs dense encoders"
        )
    if facts.remote_code and not trust_remote_code:
        raise MbenchError(f"mteb model {name!r} runs code from its repository: pass --trust-remote-code to allow it")
    declared_modalities(facts)
    similarity_of(facts)
    if path is not None:
        model_dir = Path(path).expanduser()
        if not model_dir.is_dir():
            raise MbenchError(f"mteb: --model-arg path={path}: no such directory")
        revision = directory_digest(model_dir)
    else:
        model_dir, revision = resolve_model_dir(name, facts.revision, plugin="mteb", local_arg="path")
    return facts, model_dir, revision


def _load(mteb_meta: Any, model_dir: Path, *, device: str, trust_remote_code: bool) -> Any:
    """The model built by mteb's loader from ``model_dir``, carrying mteb's registry meta as upstream does."""
    local = mteb_meta.model_copy(update={"name": str(model_dir), "revision": None})
    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        model = local.load_model(device=device, **kwargs)
    except Exception as err:  # loaders raise anything from missing extras to bad checkpoints: name the model and dir
        raise MbenchError(
            f"mteb could not load {mteb_meta.name!r} from {model_dir}: {type(err).__name__}: {err}"
        ) from err
    model.mteb_model_meta = mteb_meta
    return model


def _as_float_tensor(embeddings: Any) -> torch.Tensor:
    tensor = embeddings if isinstance(embeddings, torch.Tensor) else torch.as_tensor(embeddings)
    if tensor.is_sparse:
        tensor = tensor.to_dense()
    return tensor.detach().float().cpu()
