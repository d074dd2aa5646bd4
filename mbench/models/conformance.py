"""The plugin conformance check behind `mbench check-model`.

Each check takes a built model and sample items and returns CheckResults; nothing raises for a
failing plugin, so one run reports every problem at once. Checks:

- ``outputs``: a float tensor [n, meta.dim] (dense) / [n] (reranker) / float32 scores and
  int64 in-range indices sorted by score (lexical), with no NaN or inf (the ids are named);
- ``unit length``: a cosine model's rows are L2-normalised (mbench never renormalises them);
- ``batch-determinism``: the same outputs whether items arrive in batches of 1, 7 or 64;
- ``modalities``: every declared modality encodes without error and every undeclared one
  present in the sample is refused with an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mbench.data.types import MODALITIES, Item, ItemTable
from mbench.models.base import UNIT_NORM_TOLERANCE, Role, model_kind

DEFAULT_BATCH_SIZES = (1, 7, 64)
# Largest deviation between batchings, relative to the largest output magnitude: padding to a
# different length moves fp32 transformer outputs by ~1e-6; a leak between items moves them by far more.
FP32_TOLERANCE = 1e-4
HALF_TOLERANCE = 2e-2
SAMPLE_INSTRUCTION = "Retrieve the candidate that best matches the query."


def default_tolerance(device: str, dtype: str | None) -> float:
    """HALF_TOLERANCE where the plugin computes in half precision, else FP32_TOLERANCE.

    Half precision: an explicit fp16/bf16 dtype, or any CUDA device, where retrievers encode under
    bf16 autocast and the LLaVA-based families load bf16 weights unless told otherwise.
    """
    half = dtype in ("float16", "bfloat16") or str(device).startswith("cuda")
    return HALF_TOLERANCE if half else FP32_TOLERANCE


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one conformance check."""

    name: str
    passed: bool
    detail: str


def run_conformance(
    model: Any,
    queries: Sequence[Item],
    candidates: Sequence[Item],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerance: float = FP32_TOLERANCE,
    query_prompts: Sequence[str | None] | None = None,
    pairs: Sequence[tuple[Item, Item, str | None]] | None = None,
) -> list[CheckResult]:
    """Run every check that applies to ``model``'s kind over sample queries and candidates.

    As in a real run, each query gets the prompt of the task it came from (``query_prompts``,
    aligned with ``queries``) and candidates get none; a reranker scores ``pairs`` drawn from
    one task each, with that task's prompt.
    """
    try:
        kind = model_kind(model)
    except Exception as err:
        return [CheckResult("protocol", False, str(err))]
    results = [CheckResult("protocol", True, f"{type(model).__name__} is a {kind}")]
    if kind == "retriever":
        results += check_retriever(model, queries, "query", batch_sizes=batch_sizes, tolerance=tolerance,
                                   prompts=query_prompts)
        results += check_retriever(model, candidates, "candidate", batch_sizes=batch_sizes, tolerance=tolerance)
    elif kind == "lexical":
        results += check_lexical(model, queries, candidates, batch_sizes=batch_sizes)
    else:
        if pairs is None:
            pairs = [(q, c, None) for q, c in zip(queries, candidates)]
        results += check_reranker(model, pairs, batch_sizes=batch_sizes, tolerance=tolerance)
    return results


def _declared(model: Any, role: Role) -> frozenset[str]:
    return model.meta.query_modalities if role == "query" else model.meta.cand_modalities


def _instructions(model: Any, items: Sequence[Item], role: Role) -> list[str | None]:
    use = role == "query" and model.meta.uses_instructions
    return [SAMPLE_INSTRUCTION if use else None for _ in items]


def _prompts(model: Any, items: Sequence[Item], prompt_of: dict[int, str | None]) -> list[str | None]:
    return [prompt_of.get(id(item)) if model.meta.prompt_family else None for item in items]


def _chunks(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def check_retriever(
    model: Any,
    items: Sequence[Item],
    role: Role,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerance: float = FP32_TOLERANCE,
    prompts: Sequence[str | None] | None = None,
) -> list[CheckResult]:
    """Outputs, batch determinism and modality handling of a dense Retriever for one role.

    ``prompts`` (aligned with ``items``) are handed to a plugin that has a prompt family.
    """
    import torch

    prompt_of = {id(item): prompt for item, prompt in zip(items, prompts or [])}

    declared = _declared(model, role)
    accepted = [item for item in items if item.modality in declared]
    results = check_modalities_handled(
        lambda batch: model.encode(
            batch, role=role, instructions=_instructions(model, batch, role), prompts=_prompts(model, batch, prompt_of)
        ),
        items,
        declared,
        f"{role} modalities",
    )
    if not accepted:
        return results + [CheckResult(f"{role} outputs", False, f"no sample {role} has a declared modality {sorted(declared)}")]

    outputs: dict[int, torch.Tensor] = {}
    for size in batch_sizes:
        try:
            parts = [
                model.encode(
                    chunk, role=role, instructions=_instructions(model, chunk, role), prompts=_prompts(model, chunk, prompt_of)
                )
                for chunk in _chunks(accepted, size)
            ]
        except Exception as err:
            detail = f"encode failed with batch size {size}: {type(err).__name__}: {err}"
            return results + [CheckResult(f"{role} outputs", False, detail)]
        if size == batch_sizes[0]:
            bad_type = next((p for p in parts if not isinstance(p, torch.Tensor) or not p.is_floating_point()), None)
            if bad_type is not None:
                what = f"dtype {bad_type.dtype}" if isinstance(bad_type, torch.Tensor) else type(bad_type).__name__
                detail = f"encode returned {what}, expected a floating point torch.Tensor"
                return results + [CheckResult(f"{role} outputs", False, detail)]
            raw_dtype = parts[0].dtype
        outputs[size] = torch.cat([p.detach().float().cpu() for p in parts])
    results.append(_check_dense_output(outputs[batch_sizes[0]], raw_dtype, accepted, model.meta.dim, role))
    if model.meta.similarity == "cosine":
        results.append(_check_unit_length(outputs[batch_sizes[0]], accepted, role))
    results.append(_check_same(outputs, accepted, tolerance, f"{role} batch-determinism"))
    return results


def _check_dense_output(full: Any, raw_dtype: Any, items: Sequence[Item], dim: int | None, role: Role) -> CheckResult:
    name = f"{role} outputs"
    if dim is None:
        return CheckResult(name, False, "a dense retriever must declare meta.dim")
    if tuple(full.shape) != (len(items), dim):
        return CheckResult(name, False, f"shape {tuple(full.shape)}, expected ({len(items)}, {dim}) (meta.dim = {dim})")
    bad = _non_finite_ids(full, items)
    if bad:
        return CheckResult(name, False, f"NaN or inf in the embeddings of {len(bad)} item(s): {', '.join(bad[:5])}")
    return CheckResult(name, True, f"{len(items)} x {dim} {raw_dtype}, all finite")


def _non_finite_ids(values: Any, items: Sequence[Item]) -> list[str]:
    import torch

    rows = ~torch.isfinite(values.reshape(len(items), -1)).all(dim=1)
    return [items[int(i)].id for i in torch.nonzero(rows).flatten()]


def _check_unit_length(full: Any, items: Sequence[Item], role: Role) -> CheckResult:
    name = f"{role} unit length"
    norms = full.double().norm(dim=1)
    bad = [item.id for item, norm in zip(items, norms.tolist()) if abs(norm - 1.0) > UNIT_NORM_TOLERANCE]
    if bad:
        return CheckResult(name, False, f"similarity is cosine but {len(bad)} row(s) are not unit length "
                                        f"(e.g. {', '.join(bad[:5])}): L2-normalise in encode() or declare 'dot'")
    return CheckResult(name, True, f"every row within {UNIT_NORM_TOLERANCE} of norm 1")


def _check_same(outputs: dict[int, Any], items: Sequence[Item], tolerance: float, name: str) -> CheckResult:
    import torch

    sizes = list(outputs)
    reference = outputs[sizes[0]]
    if not torch.isfinite(reference).all():
        return CheckResult(name, False, "cannot compare batchings: the outputs contain NaN or inf")
    scale = max(float(reference.abs().max()), 1e-12)
    worst, worst_size, worst_row = 0.0, sizes[0], 0
    for size in sizes[1:]:
        other = outputs[size]
        if other.shape != reference.shape:
            return CheckResult(name, False, f"batch size {size} gave shape {tuple(other.shape)}, batch size {sizes[0]} {tuple(reference.shape)}")
        deviation = (other - reference).abs().reshape(len(items), -1).amax(dim=1) / scale
        deviation = torch.nan_to_num(deviation, nan=float("inf"))
        row = int(deviation.argmax())
        if float(deviation[row]) > worst:
            worst, worst_size, worst_row = float(deviation[row]), size, row
    if worst > tolerance:
        return CheckResult(
            name,
            False,
            f"outputs depend on the batch size: item {items[worst_row].id!r} differs by {worst:.2e} (relative) between "
            f"batch sizes {sizes[0]} and {worst_size}; tolerance {tolerance:.0e}",
        )
    return CheckResult(name, True, f"batch sizes {', '.join(map(str, sizes))} agree within {worst:.1e} (tolerance {tolerance:.0e})")


def check_modalities_handled(
    call: Callable[[Sequence[Item]], Any], items: Sequence[Item], declared: frozenset[str], name: str
) -> list[CheckResult]:
    """A declared modality must be handled and an undeclared one refused (an exception), one item each."""
    by_modality: dict[str, Item] = {}
    for item in items:
        by_modality.setdefault(item.modality, item)
    problems, handled, refused, untested = [], [], [], []
    for modality in MODALITIES:
        item = by_modality.get(modality)
        if item is None:
            if modality in declared:
                untested.append(modality)
            continue
        try:
            call([item])
        except Exception as err:
            if modality in declared:
                problems.append(f"declared {modality!r} but item {item.id!r} failed: {type(err).__name__}: {err}")
            else:
                refused.append(modality)
            continue
        if modality in declared:
            handled.append(modality)
        else:
            problems.append(f"{modality!r} is not declared but item {item.id!r} was encoded instead of refused")
    if problems:
        return [CheckResult(name, False, "; ".join(problems))]
    detail = f"handled {handled or 'none'}, refused {refused or 'none'}"
    if untested:
        detail += f"; declared but absent from the sample: {untested}"
    return [CheckResult(name, True, detail)]


def check_lexical(
    model: Any,
    queries: Sequence[Item],
    candidates: Sequence[Item],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    k: int = 10,
) -> list[CheckResult]:
    """Index/search outputs, batch determinism and modality handling of a LexicalRetriever."""
    import numpy as np

    meta = model.meta
    results = check_modalities_handled(model.index, candidates, meta.cand_modalities, "candidate modalities")
    pool = [c for c in candidates if c.modality in meta.cand_modalities]
    accepted = [q for q in queries if q.modality in meta.query_modalities]
    if not pool or not accepted:
        return results + [CheckResult("search outputs", False, "the sample has no pool or no query of a declared modality")]
    try:
        model.index(pool)
    except Exception as err:
        return results + [CheckResult("search outputs", False, f"index failed: {type(err).__name__}: {err}")]
    results += check_modalities_handled(
        lambda batch: model.search(batch, k, instructions=_instructions(model, batch, "query")),
        queries,
        meta.query_modalities,
        "query modalities",
    )
    outputs: dict[int, tuple[Any, Any]] = {}
    for size in batch_sizes:
        try:
            parts = [model.search(chunk, k, instructions=_instructions(model, chunk, "query")) for chunk in _chunks(accepted, size)]
        except Exception as err:
            return results + [CheckResult("search outputs", False, f"search failed with batch size {size}: {type(err).__name__}: {err}")]
        outputs[size] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    scores, indices = outputs[batch_sizes[0]]
    problems = []
    if scores.dtype != np.float32 or indices.dtype != np.int64:
        problems.append(f"dtypes {scores.dtype}/{indices.dtype}, expected float32 scores and int64 indices")
    if scores.shape != (len(accepted), k) or indices.shape != (len(accepted), k):
        problems.append(f"shapes {scores.shape}/{indices.shape}, expected ({len(accepted)}, {k})")
    else:
        valid = indices >= 0
        if np.any(indices >= len(pool)) or np.any(indices < -1):
            problems.append(f"indices outside [-1, {len(pool)})")
        if np.isnan(scores[valid]).any() or np.isinf(scores[valid]).any():
            bad = sorted({accepted[r].id for r in np.nonzero(~np.isfinite(np.where(valid, scores, 0.0)))[0]})
            problems.append(f"NaN or inf scores for queries {', '.join(bad[:5])}")
        elif np.any(np.diff(np.where(valid, scores, -np.inf), axis=1) > 0):
            problems.append("scores are not sorted descending")
    results.append(CheckResult("search outputs", not problems, "; ".join(problems) or f"{len(accepted)} x {k}, sorted, finite"))
    differing = [s for s in batch_sizes[1:] if not (np.array_equal(outputs[s][1], indices) and np.allclose(outputs[s][0], scores))]
    results.append(
        CheckResult(
            "search batch-determinism",
            not differing,
            f"rankings differ for batch sizes {differing}" if differing else f"identical for batch sizes {list(batch_sizes)}",
        )
    )
    return results


def check_reranker(
    model: Any,
    pairs: Sequence[tuple[Item, Item, str | None]],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerance: float = FP32_TOLERANCE,
) -> list[CheckResult]:
    """Score outputs, batch determinism and modality handling of a Reranker over (query, candidate, prompt) pairs."""
    import torch

    meta = model.meta

    def score(batch: Sequence[tuple[Item, Item, str | None]]) -> Any:
        prompts = [prompt if meta.prompt_family else None for _, _, prompt in batch]
        return model.score([q for q, _, _ in batch], [c for _, c, _ in batch], prompts=prompts)

    def by_role(role: int) -> Callable[[Sequence[Item]], Any]:
        # The modality check hands one item; score it within a pair it came with.
        def call(items: Sequence[Item]) -> Any:
            return score([next(pair for pair in pairs if pair[role] is item) for item in items])

        return call

    results = check_modalities_handled(by_role(1), [c for _, c, _ in pairs], meta.cand_modalities, "candidate modalities")
    results += check_modalities_handled(by_role(0), [q for q, _, _ in pairs], meta.query_modalities, "query modalities")
    usable = [p for p in pairs if p[0].modality in meta.query_modalities and p[1].modality in meta.cand_modalities]
    if not usable:
        return results + [CheckResult("score outputs", False, "the sample has no pair of declared modalities")]
    n = len(usable)
    pair_ids = [Item(f"{q.id}|{c.id}", None, None, "text") for q, c, _ in usable]
    outputs = {}
    for size in batch_sizes:
        try:
            parts = [score(usable[i : i + size]) for i in range(0, n, size)]
        except Exception as err:
            return results + [CheckResult("score outputs", False, f"score failed with batch size {size}: {type(err).__name__}: {err}")]
        if not all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in parts):
            return results + [CheckResult("score outputs", False, "score must return a floating point torch.Tensor")]
        outputs[size] = torch.cat([p.detach().float().cpu().reshape(-1) for p in parts])
    first = outputs[batch_sizes[0]]
    if first.shape != (n,):
        results.append(CheckResult("score outputs", False, f"{tuple(first.shape)} scores for {n} pairs"))
        return results
    bad = _non_finite_ids(first, pair_ids)
    results.append(CheckResult("score outputs", not bad, f"NaN or inf scores for pairs {', '.join(bad[:5])}" if bad else f"{n} finite scores"))
    results.append(_check_same(outputs, pair_ids, tolerance, "score batch-determinism"))
    return results


def sample_items_with_source(tables: Sequence[ItemTable], per_modality: int) -> list[tuple[Item, int]]:
    """Like ``sample_items``, with the index of the table each item came from."""
    picked: dict[str, list[tuple[Item, int]]] = {m: [] for m in MODALITIES}
    cursors = [0] * len(tables)
    progress = True
    while progress:
        progress = False
        for t, table in enumerate(tables):
            while cursors[t] < len(table):
                item = table.item(cursors[t])
                cursors[t] += 1
                bucket = picked.setdefault(item.modality, [])
                if len(bucket) < per_modality:
                    bucket.append((item, t))
                    progress = True
                    break
    # Modalities interleaved, so batches of 7 mix them the way a real pool can.
    out: list[tuple[Item, int]] = []
    for i in range(per_modality):
        out += [bucket[i] for bucket in picked.values() if i < len(bucket)]
    return out


def sample_items(tables: Sequence[ItemTable], per_modality: int) -> list[Item]:
    """Up to ``per_modality`` items of each modality, taken round-robin over ``tables`` so every task is represented."""
    return [item for item, _ in sample_items_with_source(tables, per_modality)]


def format_report(results: Sequence[CheckResult]) -> str:
    """One line per check, PASS/FAIL first."""
    return "\n".join(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<28} {r.detail}" for r in results)
