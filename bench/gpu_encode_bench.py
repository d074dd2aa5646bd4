"""Encoding throughput (items/s) of `mbench run`'s encode path for a MiniLM-sized text encoder and CLIP ViT-L/14.

    python bench/gpu_encode_bench.py --device cuda --out gpu-encode.md
    python bench/gpu_encode_bench.py --device cpu --size tiny --out /tmp/encode.md   # a quick check of the script

Models, random weights (the speed of a forward pass does not depend on their values), built from
their configs, saved with ``save_pretrained`` and loaded through the plugins like a user's
checkpoint (``--model st``, ``--model clip-sf``):

* text: sentence-transformers/all-MiniLM-L6-v2's shape (BERT, 6 layers, hidden 384, 12 heads,
  vocabulary 30,522, mean pooling, normalised) with a WordPiece tokenizer whose words are single
  tokens, so every passage is exactly ``--passage-words`` + 2 tokens;
* CLIP-SF: openai/clip-vit-large-patch14's shape (ViT-L/14 at 224 px, 24 layers, width 1024; a
  12-layer text tower of width 768; projections 768): images are JPEG files on disk, decoded in
  the DataLoader workers and preprocessed by the CLIP image processor (resize, center crop 224)
  as in a run; captions are ``--caption-words`` single-token words.

Each measurement is one call of ``mbench.engine.encode.encode_rows`` over all items (length
sorting, batching, bf16 autocast on CUDA as `mbench run --device cuda` does, copy to the host,
the non-finite check), after one untimed warm-up batch. Configurations are repeated
``--repeats`` times in alternating order (A B C, C B A, ...); the table gives the median and
the range. ``--size tiny`` swaps in the tests' tiny models and few items.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from machine_facts import machine_facts  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """Item counts and batch sizes of one benchmark size."""

    texts: int
    captions: int
    images: int
    text_batches: tuple[int, ...]
    clip_batches: tuple[int, ...]


SIZES = {
    "real": Sizes(texts=32768, captions=16384, images=1024, text_batches=(256, 1024), clip_batches=(256,)),
    "tiny": Sizes(texts=64, captions=48, images=24, text_batches=(16,), clip_batches=(8,)),
}
IMAGE_SIZE_ON_DISK = (640, 480)  # COCO's usual size


@dataclass
class Case:
    """One timed configuration: a plugin, a role and items, encoded at one batch size."""

    label: str
    model: object
    table: object
    role: str
    batch_size: int
    num_workers: int
    seconds: list[float]


def passage_table(n: int, words: int, seed: int = 0):  # -> ItemTable
    """``n`` text items of ``words`` words drawn from the tiny tokenizers' single-token words."""
    from tiny_models import BERT_WORDS

    from mbench.data.types import ItemTable

    rng = random.Random(seed)
    texts = [" ".join(rng.choice(BERT_WORDS) for _ in range(words)) for _ in range(n)]
    return ItemTable([f"t{i}" for i in range(n)], texts, [None] * n, ["text"] * n)


def caption_table(n: int, words: int, seed: int = 1):  # -> ItemTable
    """``n`` captions of ``words`` words that CLIP's tiny BPE merges into one token each."""
    from mbench.data.types import ItemTable

    rng = random.Random(seed)
    vocabulary = ("the", "dog", "cat", "photo", "of")
    texts = [" ".join(rng.choice(vocabulary) for _ in range(words)) for _ in range(n)]
    return ItemTable([f"c{i}" for i in range(n)], texts, [None] * n, ["text"] * n)


def image_table(n: int, directory: Path, seed: int = 2):  # -> ItemTable
    """``n`` JPEG files of smooth random colour fields (photo-like file sizes) as image items."""
    from PIL import Image

    from mbench.data.types import ItemTable

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = directory / f"{i:06d}.jpg"
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        coarse.resize(IMAGE_SIZE_ON_DISK, Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return ItemTable([f"i{i}" for i in range(n)], [None] * n, paths, ["image"] * n)


def mean_tokens(tokenize: Callable[[list[str]], list[list[int]]], texts: list[str]) -> float:
    """Mean token count (special tokens included) of ``texts`` under ``tokenize``."""
    return float(np.mean([len(ids) for ids in tokenize(texts[:256])]))


def time_case(case: Case, device: str) -> float:
    """Seconds of one ``encode_rows`` call over every item of the case."""
    import torch

    from mbench.engine.encode import EncodeOptions, encode_rows

    options = EncodeOptions(batch_size=case.batch_size, num_workers=case.num_workers, device=device, progress=False)
    none = [None] * len(case.table)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = encode_rows(case.model.encode, case.table, np.arange(len(case.table)), role=case.role,
                      instructions=none, prompts=none, options=options)
    seconds = time.perf_counter() - start
    assert out.shape[0] == len(case.table)  # encode_rows has checked every row is finite
    return seconds


def warm_up(case: Case, device: str) -> None:
    """One untimed batch: CUDA context, cuBLAS handles, kernels and DataLoader start-up."""
    from mbench.engine.encode import EncodeOptions, encode_rows

    n = min(case.batch_size, len(case.table))
    none = [None] * len(case.table)
    encode_rows(case.model.encode, case.table, np.arange(n), role=case.role, instructions=none, prompts=none,
                options=EncodeOptions(batch_size=case.batch_size, num_workers=0, device=device, progress=False))


def parameter_count(module: object) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the benchmark in a temporary directory (or ``--work-dir``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="real", help="real model shapes, or tiny (script check)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=8, help="DataLoader workers decoding images")
    parser.add_argument("--passage-words", type=int, default=64, help="words (= tokens) per text passage")
    parser.add_argument("--caption-words", type=int, default=16, help="words (= tokens) per CLIP caption")
    parser.add_argument("--work-dir", type=Path, default=None, help="where models and images are written (a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here too")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_encode_bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    if args.work_dir is not None:
        return run(args, argv, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="mbench-encode-bench-") as work:
        return run(args, argv, Path(work))


def build_cases(args: argparse.Namespace, work: Path) -> tuple[list[Case], dict[str, str]]:
    """The models (saved under ``work``, loaded through the registry) and items of every timed
    configuration, and the facts about them the report states."""
    from tiny_models import CLIP_L14_224, MINILM_L6, TINY_BERT, TINY_CLIP, build_tiny_clip, build_tiny_sentence_transformer

    from mbench.models.registry import build_model

    sizes = SIZES[args.size]
    real = args.size == "real"
    text_name, clip_name = ("MiniLM-L6 shape", "CLIP ViT-L/14 shape") if real else ("tiny BERT", "tiny CLIP")
    started = time.perf_counter()
    st_dir = build_tiny_sentence_transformer(work / "minilm", shape=MINILM_L6 if real else TINY_BERT)
    clip_dir = build_tiny_clip(work / "clip", shape=CLIP_L14_224 if real else TINY_CLIP)
    texts = passage_table(sizes.texts, args.passage_words)
    captions = caption_table(sizes.captions, args.caption_words)
    images = image_table(sizes.images, work / "images")
    build_seconds = time.perf_counter() - started

    cases: list[Case] = []
    for batch in sizes.text_batches:
        # The plugin's own batch_size is the engine's, so one encode call is one forward pass.
        model = build_model("st", {"name": str(st_dir), "batch_size": str(batch)}, device=args.device)
        cases.append(Case(f"{text_name}, passages of {args.passage_words} words", model, texts, "candidate", batch, 0, []))
    clip = build_model("clip-sf", {"name": str(clip_dir)}, device=args.device)
    for batch in sizes.clip_batches:
        cases.append(Case(f"{clip_name}, JPEG images", clip, images, "candidate", batch, args.num_workers, []))
        cases.append(Case(f"{clip_name}, captions of {args.caption_words} words", clip, captions, "candidate", batch, 0,
                          []))
    text_tokens = mean_tokens(lambda t: cases[0].model.model.tokenizer(t)["input_ids"], texts.texts)
    caption_tokens = mean_tokens(lambda t: clip.tokenizer(t)["input_ids"], captions.texts)
    about = {
        "models": (
            f"random weights; text encoder {parameter_count(cases[0].model.model) / 1e6:.2f} M parameters, mean "
            f"{text_tokens:.1f} tokens per passage; CLIP {parameter_count(clip.model) / 1e6:.2f} M parameters (its "
            f"text token table holds the tests' small vocabulary, not CLIP's 49,408 tokens: no effect on speed), mean "
            f"{caption_tokens:.1f} tokens per caption"
        ),
        "images": f"{IMAGE_SIZE_ON_DISK[0]}x{IMAGE_SIZE_ON_DISK[1]} JPEG files decoded by {args.num_workers} DataLoader "
                  "workers (started by each timed call, as by every shard of a run)",
        "setup": f"models and items built in {build_seconds:.0f} s",
    }
    return cases, about


def report(args: argparse.Namespace, argv: list[str], cases: list[Case], about: dict[str, str],
           load: tuple[float, float]) -> str:
    """The markdown report: machine, versions, precision, models, then one row per configuration."""
    import torch
    import transformers

    from mbench.engine.encode import autocast_context

    autocast = getattr(autocast_context(args.device), "fast_dtype", None)  # None: no autocast (CPU)
    dtype = "fp32" if autocast is None else (
        f"fp32 weights, {str(autocast).removeprefix('torch.')} autocast (as `mbench run --device {args.device}`)")
    facts = machine_facts()
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        facts = {"GPU": f"{props.name}, {props.total_memory / 2**30:.0f} GiB", **facts}
    facts.update({"torch": torch.__version__, "CUDA (torch)": str(torch.version.cuda),
                  "transformers": transformers.__version__, "device": args.device, "dtype": dtype,
                  "load average (1 min) before / after the timed runs": f"{load[0]:.2f} / {load[1]:.2f}", **about})
    lines = [
        "# Encoding throughput: `mbench run`'s encode path",
        "",
        f"Command: `python bench/gpu_encode_bench.py {' '.join(argv)}`",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in facts.items()],
        "",
        f"Median of {args.repeats} repeats in alternating order, after one warm-up batch per configuration.",
        "",
        "| items | role | batch size | n | median s | items/s (median) | items/s (min-max) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        n = len(case.table)
        median = statistics.median(case.seconds)
        lines.append(f"| {case.label} | {case.role} | {case.batch_size} | {n} | {median:.3f} | {n / median:,.0f} | "
                     f"{n / max(case.seconds):,.0f}-{n / min(case.seconds):,.0f} |")
    if args.device.startswith("cuda"):
        lines += ["", f"Peak GPU memory (torch allocator) during the timed runs: "
                      f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: list[str], work: Path) -> int:
    """Build everything under ``work``, time every configuration, print (and write) the report."""
    import torch

    cases, about = build_cases(args, work)
    for case in cases:
        warm_up(case, args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        for case in cases if repeat % 2 == 0 else reversed(cases):
            case.seconds.append(time_case(case, args.device))
    text = report(args, argv, cases, about, (load_before, os.getloadavg()[0]))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
