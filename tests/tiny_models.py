"""Tiny random models saved like hub checkpoints, for plugin tests (nothing is downloaded).

``build_tiny_clip``: a CLIP (32-d towers, 2 layers, 32 px images, 8 px patches, 16-d
projections) with a CLIP BPE tokenizer and image processor; ``clip_config`` the same with any
tower sizes (ViT-L/14 for benchmarks). ``build_tiny_sentence_transformer``: a BERT
sentence-transformer (mean pooling, normalised) with an explicit WordPiece vocabulary, any size
(MiniLM's shape for benchmarks). ``build_tiny_llava_next``: a
LLaVA-Next (tiny CLIP vision tower, 56 px tiles, 14 px patches + a tiny Mistral or Llama) with a
byte-level BPE tokenizer whose vocabulary holds ``<image>``, Mistral's and Llama-3's special
tokens, and "True"/"False" as single tokens with and without a leading space (for True/False
rerankers). Everything is written with ``save_pretrained`` so tests load it through the same
``from_pretrained`` path a user's checkpoint takes. Vocabularies are explicit (no BPE training)
so the token ids never change between library versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CLIP_IMAGE_SIZE = 32
CLIP_PATCH_SIZE = 8
CLIP_PROJECTION_DIM = 16
LLAVA_IMAGE_SIZE = 56
LLAVA_PATCH_SIZE = 14
LLAVA_HIDDEN_SIZE = 32
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# As in llava-hf/llava-v1.6-mistral-7b-hf: images first, then text, inside [INST] ... [/INST].
MISTRAL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
    "{{ ' [/INST]' }}{% else %}{{ ' ' }}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)
# Llama-3 headers, as used by E5-V (royokong/e5-v, a LLaVA-Next on Llama-3-8B).
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

MISTRAL_SPECIALS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
LLAMA3_SPECIALS = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "unk": "<unk>", "pad": "<pad>"}
# Every special token of both families is in both vocabularies, so ids are the same for either format.
_SPECIAL_TOKENS = [
    "<unk>", "<s>", "</s>", "<pad>", "<image>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
]
# Whole words given their own token, each also with the leading-space marker "Ġ" of byte-level BPE.
_WORDS = ["True", "False", "Summary", "above", "sentence", "image", "in", "one", "word", "the", "a", "dog", "cat"]


def _chain_merges(symbols: list[str]) -> list[tuple[str, str]]:
    """Left-to-right merges that glue ``symbols`` into one token (each step extends the prefix)."""
    merges, prefix = [], symbols[0]
    for symbol in symbols[1:]:
        merges.append((prefix, symbol))
        prefix += symbol
    return merges


@dataclass(frozen=True)
class TowerShape:
    """The size of one transformer tower."""

    hidden: int
    intermediate: int
    layers: int
    heads: int


@dataclass(frozen=True)
class ClipShape:
    """A CLIP architecture: both towers, the image and patch sizes and the projection width."""

    text: TowerShape
    vision: TowerShape
    image_size: int
    patch_size: int
    projection_dim: int


TINY_CLIP = ClipShape(TowerShape(32, 64, 2, 4), TowerShape(32, 64, 2, 4), CLIP_IMAGE_SIZE, CLIP_PATCH_SIZE,
                      CLIP_PROJECTION_DIM)
# openai/clip-vit-large-patch14 (UniIR's CLIP-SF backbone): ViT-L/14 at 224 px and its 12-layer text tower.
CLIP_L14_224 = ClipShape(TowerShape(768, 3072, 12, 12), TowerShape(1024, 4096, 24, 16), 224, 14, 768)


def build_tiny_clip(directory: str | Path, *, seed: int = 0, shape: ClipShape = TINY_CLIP) -> Path:
    """Write a random CLIPModel (tiny unless ``shape`` says otherwise) with its CLIPTokenizer and image processor.

    Every parameter (layer norms and biases included) is perturbed away from its initial value so
    a wrong parameter-name mapping always changes the outputs.
    """
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory = Path(directory)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    # CLIP's vocabulary layout: bytes, bytes + "</w>", merged tokens, then the two special tokens last
    # (so the end-of-text id is the largest, which OpenAI CLIP's argmax pooling relies on).
    tokens = alphabet + [ch + "</w>" for ch in alphabet]
    merges: list[tuple[str, str]] = []
    for word in ("the", "dog", "cat", "photo", "of"):
        chain = _chain_merges(list(word[:-1]) + [word[-1] + "</w>"])
        for left, right in chain:
            if (left, right) not in merges:
                merges.append((left, right))
                if left + right not in tokens:
                    tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 77

    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": shape.text.hidden,
            "intermediate_size": shape.text.intermediate,
            "num_hidden_layers": shape.text.layers,
            "num_attention_heads": shape.text.heads,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": shape.vision.hidden,
            "intermediate_size": shape.vision.intermediate,
            "num_hidden_layers": shape.vision.layers,
            "num_attention_heads": shape.vision.heads,
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
        },
        projection_dim=shape.projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": shape.image_size},
        crop_size={"height": shape.image_size, "width": shape.image_size},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@dataclass(frozen=True)
class BertShape:
    """A BERT encoder's size and its sentence-transformers sequence limit."""

    tower: TowerShape
    vocab_size: int
    max_position: int
    max_seq_length: int


TINY_BERT = BertShape(TowerShape(32, 64, 2, 4), vocab_size=0, max_position=128, max_seq_length=128)
# sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, BERT's 30,522-token vocabulary.
MINILM_L6 = BertShape(TowerShape(384, 1536, 6, 12), vocab_size=30522, max_position=512, max_seq_length=256)
# WordPiece vocabulary of the tiny sentence-transformer: whole words, then letters and continuations.
BERT_WORDS = (
    "the", "a", "of", "and", "in", "on", "is", "was", "with", "for", "to", "by", "at", "from", "dog", "cat",
    "red", "blue", "green", "ball", "box", "town", "river", "bridge", "market", "school", "church", "castle",
    "north", "south", "old", "new", "small", "large", "city", "village", "people", "built", "known", "year",
)
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_bert_tokenizer(vocab_size: int = 0):  # -> PreTrainedTokenizerFast
    """A lowercasing WordPiece tokenizer ([CLS] text [SEP]) over ``BERT_WORDS``, letters and digits.

    ``vocab_size`` pads the vocabulary with unused tokens up to that size (MiniLM's 30,522), so
    the embedding matrix has the real model's shape.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = _BERT_SPECIALS + list(BERT_WORDS) + symbols + ["##" + s for s in string.ascii_lowercase + string.digits]
    tokens += [f"[unused{i}]" for i in range(max(0, vocab_size - len(tokens)))]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_tiny_sentence_transformer(directory: str | Path, *, seed: int = 0, shape: BertShape = TINY_BERT) -> Path:
    """Write a random BERT sentence-transformer (mean pooling, then normalised, as MiniLM) to ``directory``; return it.

    The backbone is saved with ``save_pretrained`` and wrapped by sentence-transformers' own
    modules, so it loads through the plugin's ``SentenceTransformer(path)`` like a hub model.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:  # sentence-transformers >= 6 moved the modules; `models` stays as a deprecated alias
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    directory = Path(directory)
    backbone = directory / "backbone"
    tokenizer = build_bert_tokenizer(shape.vocab_size)
    tokenizer.model_max_length = shape.max_seq_length
    tokenizer.save_pretrained(backbone)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=shape.tower.hidden, intermediate_size=shape.tower.intermediate,
        num_hidden_layers=shape.tower.layers, num_attention_heads=shape.tower.heads,
        max_position_embeddings=shape.max_position, pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).eval().save_pretrained(backbone)
    transformer = models.Transformer(str(backbone), max_seq_length=shape.max_seq_length)
    modules = [transformer, models.Pooling(shape.tower.hidden, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory / "st"))
    return directory / "st"


def build_tiny_llava_tokenizer(chat_format: Literal["mistral", "llama3"] = "mistral"):  # -> TokenizersBackend
    """A byte-level BPE tokenizer that prepends the format's BOS; "True", " True", "False", " False" are single tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = MISTRAL_SPECIALS if chat_format == "mistral" else LLAMA3_SPECIALS
    tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges: list[tuple[str, str]] = []
    # Space-prefixed chains first: BPE applies the lowest-ranked merge first, so "ĠTrue" must not
    # lose its "T" to the "T"+"r" merge of the bare word.
    for word in [f"\u0120{w}" for w in _WORDS] + _WORDS:
        for left, right in _chain_merges(list(word)):
            if (left, right) not in merges:
                merges.append((left, right))
                if left + right not in tokens:
                    tokens.append(left + right)
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS])
    bos = specials["bos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=specials["eos"],
        unk_token=specials["unk"],
        pad_token=specials["pad"],
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = MISTRAL_CHAT_TEMPLATE if chat_format == "mistral" else LLAMA3_CHAT_TEMPLATE
    return fast


def build_tiny_llava_next(
    directory: str | Path, *, chat_format: Literal["mistral", "llama3"] = "mistral", seed: int = 0
) -> Path:
    """Write a tiny random LLaVA-Next (model, processor, tokenizer) to ``directory``; return it.

    ``chat_format="mistral"``: Mistral text model, ``[INST]`` template (llava-v1.6-mistral);
    ``"llama3"``: Llama text model, Llama-3 headers (E5-V).
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    directory = Path(directory)
    tokenizer = build_tiny_llava_tokenizer(chat_format)
    grid = [
        [LLAVA_IMAGE_SIZE, 2 * LLAVA_IMAGE_SIZE],
        [2 * LLAVA_IMAGE_SIZE, LLAVA_IMAGE_SIZE],
        [2 * LLAVA_IMAGE_SIZE, 2 * LLAVA_IMAGE_SIZE],
    ]
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=LLAVA_IMAGE_SIZE,
        patch_size=LLAVA_PATCH_SIZE,
        projection_dim=32,
    )
    text_kwargs = {
        "vocab_size": len(tokenizer),
        "hidden_size": LLAVA_HIDDEN_SIZE,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    text = MistralConfig(**text_kwargs, sliding_window=None) if chat_format == "mistral" else LlamaConfig(**text_kwargs)
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=grid,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": LLAVA_IMAGE_SIZE},
        crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
        image_grid_pinpoints=grid,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
