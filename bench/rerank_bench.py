"""Pairs per second of the True/False reranker on a real-size LLaVA-Next with random weights (nothing downloaded).

    python bench/rerank_bench.py --device cuda [--batch-sizes 1,4,8,16] [--pairs 64] [--image-size 640x480]

The model is llava-v1.6-mistral-7b's architecture (CLIP ViT-L/14-336 tower, 2-layer MLP
projector, Mistral-7B: 32 layers, hidden 4096, 32 heads / 8 KV heads, MLP 14336, vocabulary
32064, AnyRes grid of llava-v1.6) built from its config straight on the device in bf16 (fp32
on CPU) with random weights; the speed of a forward pass does not depend on the weights' values.
The tokenizer is the tests' tiny byte-level one (its ids are all below 32064), so text takes
more tokens than with Mistral's tokenizer; the image (up to 5 x 576 patch tokens) dominates the
sequence either way, and the script prints the mean tokens per pair so numbers can be compared.
Pairs are CIRR/CIRCO-style: candidate image + modification text, Table 13's prompt, Mistral's
[INST] template. One warm-up batch per batch size is not timed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PROMPT = "<cimg>\nCaption:<qtxt>\nDoes the above caption describe the modification of the image? True or False"
CAPTIONS = ["make the dog sit on a red sofa", "remove the people and add snow", "show two cats instead of one",
            "change the day to night and add street lights"]


def build_reranker(device: str, batch_size: int):
    """A TrueFalseReranker around a random-weight LLaVA-v1.6-Mistral-7B-shaped model on ``device``."""
    from tiny_models import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_tiny_llava_tokenizer
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    tokenizer = build_tiny_llava_tokenizer("mistral")
    grid = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    text = MistralConfig(vocab_size=32064, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         sliding_window=None, rope_theta=1e6, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=grid,
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             vision_feature_select_strategy="default", vision_feature_layer=-2, image_seq_length=576)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaNextForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                              image_grid_pinpoints=grid, image_mean=OPENAI_CLIP_MEAN,
                                              image_std=OPENAI_CLIP_STD)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=tokenizer.chat_template)
    return TrueFalseReranker.from_loaded(model, processor, name="llava-v1.6-mistral-7b-shaped (random weights)",
                                         revision="random", batch_size=batch_size)


def main() -> int:
    """Time reranker.score over --pairs pairs for each batch size and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--image-size", default="640x480", help="WxH of the candidate images (COCO-like default)")
    args = parser.parse_args()
    from PIL import Image

    from mbench.data.types import Item

    width, height = (int(v) for v in args.image_size.split("x"))
    images = [Image.new("RGB", (width, height), ((37 * i) % 256, (91 * i) % 256, (151 * i) % 256)) for i in range(8)]
    queries = [Item(f"q{i}", CAPTIONS[i % len(CAPTIONS)], None, "text") for i in range(args.pairs)]
    cands = [Item(f"c{i}", None, images[i % len(images)], "image") for i in range(args.pairs)]
    prompts = [PROMPT] * args.pairs
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    reranker = build_reranker(args.device, sizes[0])
    text, _ = reranker.render(queries[0], cands[0], PROMPT)
    tokens = reranker.processor(text=[text], images=[images[0]], return_tensors="pt")["input_ids"].shape[1]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}; dtype: {reranker.torch_dtype}; image {width}x{height}; {tokens} tokens per pair")
    print("| batch size | pairs | seconds | pairs/s | peak GPU memory (GiB) |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        reranker.batch_size = size
        reranker.score(queries[:size], cands[:size], prompts=prompts[:size])  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        reranker.score(queries, cands, prompts=prompts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
        print(f"| {size} | {args.pairs} | {seconds:.2f} | {args.pairs / seconds:.1f} | {peak:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
