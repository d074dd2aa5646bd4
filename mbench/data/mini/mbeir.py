"""The mini benchmark's M-BEIR layout: the 16 (dataset, task) pairs of M-BEIR with their query files,
local candidate pools, 5-column qrels, JPEG images under ``mbeir_images/`` and the instruction TSV.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mbench.data.mini.scenes import (
    COLOURS,
    COUNT_WORDS,
    EVENTS,
    OBJECTS,
    PATTERNS,
    PLACES,
    TOWNS,
    Scene,
    distinct_garments,
    distinct_scenes,
    everyday_caption,
    garment_image,
    modify,
    news_caption,
    save_jpeg,
    scene_image,
    seeded_rng,
    write_text,
)
from mbench.formats.jsonl import write_jsonl
from mbench.formats.qrels import write_qrels

# (query modality, candidate modality, dataset name, dataset id, prompts): the M-BEIR instruction
# rows of the 16 tasks (prompt_1 confirmed; prompts 2-4 transcribed from the UniIR paper).
INSTRUCTIONS = (
    ("text", "image", "VisualNews", 0, ("Identify the news-related image in line with the described event.", "Display an image that best captures the following caption from the news.", "Based on the caption, provide the most fitting image for the news story.", "I want you to retrieve an image of this news caption.")),  # noqa: E501
    ("text", "image", "MSCOCO", 9, ("Find me an everyday image that matches the given caption.", "Identify the image showcasing the described everyday scene.", "I want to retrieve an image of this daily life description.", "Show me an image that best captures the following common scene description.")),  # noqa: E501
    ("text", "image", "Fashion200K", 1, ("Based on the following fashion description, retrieve the best matching image.", "Match the provided description to the correct fashion item photo.", "Identify the fashion image that aligns with the described product.", "You need to identify the image that corresponds to the fashion product description provided.")),  # noqa: E501
    ("text", "text", "WebQA", 2, ("Retrieve passages from Wikipedia that provide answers to the following question.", "You have to find a Wikipedia paragraph that provides the answer to the question.", "I want to find an answer to the question. Can you find some snippets that provide evidence from Wikipedia?", "I'm looking for a Wikipedia snippet that answers this question.")),  # noqa: E501
    ("text", "image,text", "EDIS", 3, ("Find a news image that matches the provided caption.", "Identify the news photo for the given caption.", "Can you pair this news caption with the right image?", "I'm looking for an image that aligns with this news caption.")),  # noqa: E501
    ("text", "image,text", "WebQA", 2, ("Find a Wikipedia image that answers this question.", "Provide with me an image from Wikipedia to answer this question.", "I want to know the answer to this question. Please find the related Wikipedia image for me.", "You need to retrieve an evidence image from Wikipedia to address this question.")),  # noqa: E501
    ("image", "text", "VisualNews", 0, ("Find a caption for the news in the given photo.", "Based on the shown image, retrieve an appropriate news caption.", "Provide a news-related caption for the displayed image.", "I want to know the caption for this news image.")),  # noqa: E501
    ("image", "text", "MSCOCO", 9, ("Find an image caption describing the following everyday image.", "Retrieve the caption for the displayed day-to-day image.", "Can you find a caption talking about this daily life image?", "I want to locate the caption that best describes this everyday scene image.")),  # noqa: E501
    ("image", "text", "Fashion200K", 1, ("Find a product description for the fashion item in the image.", "Based on the displayed image, retrieve the corresponding fashion description.", "Can you retrieve the description for the fashion item in the image?", "I want to find a matching description for the fashion item in this image.")),  # noqa: E501
    ("image", "image", "NIGHTS", 4, ("Find a day-to-day image that looks similar to the provided image.", "Which everyday image is the most similar to the reference image?", "Find a daily life image that is identical to the given one.", "You need to identify the common scene image that aligns most with this reference image.")),  # noqa: E501
    ("image,text", "text", "OVEN", 5, ("Retrieve a Wikipedia paragraph that provides an answer to the given query about the image.", "Determine the Wikipedia snippet that identifies the visual entity in the image.", "I want to find a paragraph from Wikipedia that answers my question about this image.", "You have to find a Wikipedia segment that identifies this image's subject.")),  # noqa: E501
    ("image,text", "text", "INFOSEEK", 6, ("Retrieve a Wikipedia paragraph that provides an answer to the given query about the image.", "Determine the Wikipedia snippet that matches the question of this image.", "I want to find a paragraph from Wikipedia that answers my question about this image.", "You have to find a Wikipedia segment that answers the question about the displayed image.")),  # noqa: E501
    ("image,text", "image", "FashionIQ", 7, ("Find a fashion image that aligns with the reference image and style note.", "With the reference image and modification instructions, find the described fashion look.", "Given the reference image and design hint, identify the matching fashion image.", "I'm looking for a similar fashion product image with the described style changes.")),  # noqa: E501
    ("image,text", "image", "CIRR", 8, ("Retrieve a day-to-day image that aligns with the modification instructions of the provided image.", "Pull up a common scene image like this one, but with the modifications I asked for.", "Can you help me find a daily image that meets the modification from the given image?", "I'm looking for a similar everyday image with the described changes.")),  # noqa: E501
    ("image,text", "image,text", "OVEN", 5, ("Retrieve a Wikipedia image-description pair that provides evidence for the question of this image.", "Determine the Wikipedia image-snippet pair that clarifies the entity in this picture.", "I want to find an image and subject description from Wikipedia that answers my question about this image.", "I want to know the subject in the photo. Can you provide the relevant Wikipedia section and image?")),  # noqa: E501
    ("image,text", "image,text", "INFOSEEK", 6, ("Retrieve a Wikipedia image-description pair that provides evidence for the question of this image.", "Determine the Wikipedia image-snippet pair that matches my question about this image.", "I want to find an image and subject description from Wikipedia that answers my question about this image.")),  # noqa: E501
)


@dataclass(frozen=True)
class MiniTask:
    """One mini M-BEIR task: its name, M-BEIR dataset and task ids, modalities and file stem."""

    name: str
    dataset: str
    dataset_id: int
    task_id: int
    query_modality: str
    cand_modality: str
    n_queries: int
    pool_size: int

    @property
    def stem(self) -> str:
        """The M-BEIR file stem, ``mbeir_<dataset>_task<k>``."""
        return f"mbeir_{self.dataset}_task{self.task_id}"

    @property
    def query_file(self) -> str:
        """Path of the query file under the M-BEIR root."""
        return f"query/test/{self.stem}_test.jsonl"

    @property
    def pool_file(self) -> str:
        """Path of the local pool under the M-BEIR root (MSCOCO's carry ``_test`` as in M-BEIR)."""
        infix = "_test" if self.dataset == "mscoco" else ""
        return f"cand_pool/local/{self.stem}{infix}_cand_pool.jsonl"

    @property
    def qrels_file(self) -> str:
        """Path of the 5-column qrels file under the M-BEIR root."""
        return f"qrels/test/{self.stem}_test_qrels.txt"


# The 16 M-BEIR (dataset, task) pairs in M-BEIR's order, with the mini sizes.
MBEIR_TASKS = (
    MiniTask("mini.mbeir.visualnews.t2i", "visualnews", 0, 0, "text", "image", 20, 60),
    MiniTask("mini.mbeir.mscoco.t2i", "mscoco", 9, 0, "text", "image", 24, 40),
    MiniTask("mini.mbeir.fashion200k.t2i", "fashion200k", 1, 0, "text", "image", 16, 48),
    MiniTask("mini.mbeir.webqa.t2t", "webqa", 2, 1, "text", "text", 20, 60),
    MiniTask("mini.mbeir.edis.t2it", "edis", 3, 2, "text", "image,text", 20, 50),
    MiniTask("mini.mbeir.webqa.t2it", "webqa", 2, 2, "text", "image,text", 16, 40),
    MiniTask("mini.mbeir.visualnews.i2t", "visualnews", 0, 3, "image", "text", 20, 60),
    MiniTask("mini.mbeir.mscoco.i2t", "mscoco", 9, 3, "image", "text", 20, 80),
    MiniTask("mini.mbeir.fashion200k.i2t", "fashion200k", 1, 3, "image", "text", 16, 48),
    MiniTask("mini.mbeir.nights.i2i", "nights", 4, 4, "image", "image", 20, 60),
    MiniTask("mini.mbeir.oven.it2t", "oven", 5, 6, "image,text", "text", 20, 50),
    MiniTask("mini.mbeir.infoseek.it2t", "infoseek", 6, 6, "image,text", "text", 20, 50),
    MiniTask("mini.mbeir.fashioniq.it2i", "fashioniq", 7, 7, "image,text", "image", 16, 48),
    MiniTask("mini.mbeir.cirr.it2i", "cirr", 8, 7, "image,text", "image", 20, 60),
    MiniTask("mini.mbeir.oven.it2it", "oven", 5, 8, "image,text", "image,text", 16, 40),
    MiniTask("mini.mbeir.infoseek.it2it", "infoseek", 6, 8, "image,text", "image,text", 16, 40),
)
# OVEN and InfoSeek it2t queries whose entity also has a passage in the other dataset's pool
# (M-BEIR's cross-dataset judgments: dropped for the local pool, kept for the global one).
CROSS_DATASET_QUERIES = 2



# ---------------------------------------------------------------- M-BEIR layout


class _MbeirWriter:
    """Allocates M-BEIR ids per dataset and writes images, query files, pools and qrels."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.next_qid: dict[int, int] = {}
        self.next_did: dict[int, int] = {}
        self.next_image: dict[str, int] = {}

    def qid(self, dataset_id: int) -> str:
        number = self.next_qid.get(dataset_id, 0) + 1
        self.next_qid[dataset_id] = number
        return f"{dataset_id}:{number}"

    def did(self, dataset_id: int) -> str:
        number = self.next_did.get(dataset_id, 0) + 1
        self.next_did[dataset_id] = number
        return f"{dataset_id}:{number}"

    def image(self, dataset: str, image) -> str:
        number = self.next_image.get(dataset, 0) + 1
        self.next_image[dataset] = number
        relative = f"mbeir_images/{dataset}_images/{number:06d}.jpg"
        save_jpeg(image, self.root / relative)
        return relative

    def candidate(self, task: MiniTask, text: str | None, image: str | None) -> dict:
        modality = "image,text" if text and image else ("image" if image else "text")
        return {"txt": text, "img_path": image, "modality": modality, "did": self.did(task.dataset_id),
                "src_content": None}

    def query(self, task: MiniTask, text: str | None, image: str | None, positives: list[str]) -> dict:
        return {
            "qid": self.qid(task.dataset_id), "query_txt": text, "query_img_path": image,
            "query_modality": task.query_modality, "query_src_content": None, "pos_cand_list": positives,
            "neg_cand_list": [], "task_id": task.task_id,
        }

    def write(self, task: MiniTask, queries: list[dict], pool: list[dict]) -> None:
        if len(queries) != task.n_queries or len(pool) != task.pool_size:
            raise AssertionError(f"{task.name}: generated {len(queries)} queries / {len(pool)} candidates")
        write_jsonl(self.root / task.query_file, queries)
        write_jsonl(self.root / task.pool_file, pool)
        judged = [(q["qid"], did) for q in queries for did in q["pos_cand_list"]]
        write_qrels(self.root / task.qrels_file, [q for q, _ in judged], [d for _, d in judged], [1] * len(judged),
                    format="mbeir", task_ids=[task.task_id] * len(judged))


def _task(name: str) -> MiniTask:
    return next(task for task in MBEIR_TASKS if task.name == name)


def generate_mbeir(root: Path) -> None:
    """Write the 16 mini M-BEIR tasks and the instruction TSV under ``root``."""
    writer = _MbeirWriter(root)
    _scene_text_pairs(writer, "visualnews", news=True)
    _mscoco(writer)
    _fashion200k(writer)
    _webqa_t2t(writer)
    _image_text_pool(writer, _task("mini.mbeir.edis.t2it"), news=True)
    _image_text_pool(writer, _task("mini.mbeir.webqa.t2it"), news=False)
    _nights(writer)
    _entities(writer)
    _fashioniq(writer)
    _cirr(writer)
    rows = ["query_modality\tcand_modality\tdataset_name\tdataset_id\tprompt_1\tprompt_2\tprompt_3\tprompt_4\n"]
    for qmod, cmod, dataset, dataset_id, prompts in INSTRUCTIONS:
        cells = list(prompts) + [""] * (4 - len(prompts))
        rows.append("\t".join([qmod, cmod, dataset, str(dataset_id), *cells]) + "\n")
    write_text(root / "instructions" / "query_instructions.tsv", "".join(rows))


def _scene_text_pairs(writer: _MbeirWriter, dataset: str, news: bool) -> None:
    """Text -> image and image -> text tasks over news-captioned scenes (VisualNews)."""
    t2i, i2t = _task(f"mini.mbeir.{dataset}.t2i"), _task(f"mini.mbeir.{dataset}.i2t")
    rng = seeded_rng(t2i.name)
    scenes = distinct_scenes(rng, t2i.pool_size)
    pool = [writer.candidate(t2i, None, writer.image(dataset, scene_image(s, f"{t2i.name}/{i}")))
            for i, s in enumerate(scenes)]
    queries = [writer.query(t2i, news_caption(s, rng), None, [pool[i]["did"]])
               for i, s in enumerate(scenes[: t2i.n_queries])]
    writer.write(t2i, queries, pool)

    rng = seeded_rng(i2t.name)
    scenes = distinct_scenes(rng, i2t.pool_size)
    pool = [writer.candidate(i2t, news_caption(s, rng), None) for s in scenes]
    queries = [writer.query(i2t, None, writer.image(dataset, scene_image(s, f"{i2t.name}/{i}")), [pool[i]["did"]])
               for i, s in enumerate(scenes[: i2t.n_queries])]
    writer.write(i2t, queries, pool)


def _mscoco(writer: _MbeirWriter) -> None:
    """MSCOCO shares its images: the t2i pool's images are the i2t queries; every image has two captions."""
    t2i, i2t = _task("mini.mbeir.mscoco.t2i"), _task("mini.mbeir.mscoco.i2t")
    rng = seeded_rng(t2i.name)
    scenes = distinct_scenes(rng, t2i.pool_size)
    images = [writer.image("mscoco", scene_image(s, f"{t2i.name}/{i}")) for i, s in enumerate(scenes)]
    captions = [[everyday_caption(s, v) for v in rng.sample(range(5), 2)] for s in scenes]
    pool = [writer.candidate(t2i, None, image) for image in images]
    queries = [writer.query(t2i, captions[i][0], None, [pool[i]["did"]]) for i in range(t2i.n_queries)]
    writer.write(t2i, queries, pool)

    caption_pool = [writer.candidate(i2t, text, None) for pair in captions for text in pair]
    queries = [writer.query(i2t, None, images[i], [caption_pool[2 * i]["did"], caption_pool[2 * i + 1]["did"]])
               for i in range(i2t.n_queries)]
    writer.write(i2t, queries, caption_pool)


def _fashion200k(writer: _MbeirWriter) -> None:
    t2i, i2t = _task("mini.mbeir.fashion200k.t2i"), _task("mini.mbeir.fashion200k.i2t")
    for task, text_to_image in ((t2i, True), (i2t, False)):
        rng = seeded_rng(task.name)
        garments = distinct_garments(rng, task.pool_size)
        if text_to_image:
            pool = [writer.candidate(task, None, writer.image("fashion200k", garment_image(g, f"{task.name}/{i}")))
                    for i, g in enumerate(garments)]
            queries = [writer.query(task, g.description(), None, [pool[i]["did"]])
                       for i, g in enumerate(garments[: task.n_queries])]
        else:
            pool = [writer.candidate(task, g.description(), None) for g in garments]
            queries = [
                writer.query(task, None, writer.image("fashion200k", garment_image(g, f"{task.name}/{i}")),
                             [pool[i]["did"]])
                for i, g in enumerate(garments[: task.n_queries])
            ]
        writer.write(task, queries, pool)


def _entity_passage(scene: Scene, town: str, rng: random.Random) -> str:
    colour, noun = COLOURS[scene.colour][0], OBJECTS[scene.obj][0]
    year = rng.randint(1820, 1990)
    return (
        f"The {colour} {noun} of {town} is a landmark {PLACES[scene.place][1]} near {town}. "
        f"It was put up in {year} and shows {scene.phrase()}, which visitors photograph every summer."
    )


def _webqa_t2t(writer: _MbeirWriter) -> None:
    task = _task("mini.mbeir.webqa.t2t")
    rng = seeded_rng(task.name)
    scenes = distinct_scenes(rng, task.pool_size)
    towns = [TOWNS[i % len(TOWNS)] for i in rng.sample(range(len(TOWNS) * 2), task.pool_size)]
    pool = [writer.candidate(task, _entity_passage(s, t, rng), None) for s, t in zip(scenes, towns)]
    questions = (
        "Which town has {count} {colour} {noun} {place}?",
        "Where can you see the {colour} {noun} {place}?",
        "In which town was the landmark with {count} {colour} {noun} put up?",
        "What year was the {colour} {singular} of {town} put up?",
    )
    queries = []
    for i, (scene, town) in enumerate(list(zip(scenes, towns))[: task.n_queries]):
        text = rng.choice(questions).format(
            count=COUNT_WORDS[scene.count], colour=COLOURS[scene.colour][0], noun=scene.noun(), singular=OBJECTS[scene.obj][0],
            place=PLACES[scene.place][1], town=town,
        )
        queries.append(writer.query(task, text, None, [pool[i]["did"]]))
    writer.write(task, queries, pool)


def _image_text_pool(writer: _MbeirWriter, task: MiniTask, news: bool) -> None:
    """Text -> (image, text) pairs: EDIS (news headline + photo) and WebQA (Wikipedia image + caption)."""
    rng = seeded_rng(task.name)
    scenes = distinct_scenes(rng, task.pool_size)
    towns = [TOWNS[i] for i in rng.sample(range(len(TOWNS)), len(TOWNS))]
    pool = []
    for i, scene in enumerate(scenes):
        town = towns[i % len(towns)]
        colour, noun = COLOURS[scene.colour][0], scene.noun()
        text = (f"{town} {rng.choice(EVENTS)} features {colour} {noun}" if news
                else f"{town}: {scene.phrase()}")
        image = writer.image(task.dataset, scene_image(scene, f"{task.name}/{i}"))
        pool.append(writer.candidate(task, text, image))
    queries = []
    for i, scene in enumerate(scenes[: task.n_queries]):
        town = towns[i % len(towns)]
        if news:
            text = news_caption(scene, rng).replace(" during ", f" in {town} during ", 1)
        else:
            text = f"What colour are the {OBJECTS[scene.obj][1]} {PLACES[scene.place][1]} in {town}?"
        queries.append(writer.query(task, text, None, [pool[i]["did"]]))
    writer.write(task, queries, pool)


def _nights(writer: _MbeirWriter) -> None:
    """Image -> image: the positive is the same scene rendered with another jitter; distractors share attributes."""
    task = _task("mini.mbeir.nights.i2i")
    rng = seeded_rng(task.name)
    scenes = distinct_scenes(rng, task.pool_size)
    pool = [writer.candidate(task, None, writer.image("nights", scene_image(s, f"{task.name}/pool/{i}")))
            for i, s in enumerate(scenes)]
    queries = [
        writer.query(task, None, writer.image("nights", scene_image(s, f"{task.name}/query/{i}")), [pool[i]["did"]])
        for i, s in enumerate(scenes[: task.n_queries])
    ]
    writer.write(task, queries, pool)


def _entities(writer: _MbeirWriter) -> None:
    """OVEN and InfoSeek: (image, question) -> Wikipedia passage, or -> (image, passage) pairs.

    The first CROSS_DATASET_QUERIES it2t queries of each dataset also have a positive passage
    in the other dataset's pool, as M-BEIR's OVEN/InfoSeek qrels do.
    """
    rng = seeded_rng("entities")
    everything = distinct_scenes(rng, 200)
    shared = everything[:CROSS_DATASET_QUERIES]
    rest = iter(everything[CROSS_DATASET_QUERIES:])
    towns = {scene: TOWNS[i % len(TOWNS)] for i, scene in enumerate(everything)}
    it2t = {name: _task(f"mini.mbeir.{name}.it2t") for name in ("oven", "infoseek")}
    entity_lists = {name: shared + [next(rest) for _ in range(task.pool_size - len(shared))]
                    for name, task in it2t.items()}
    pools = {}
    for name, task in it2t.items():
        task_rng = seeded_rng(task.name)
        pools[name] = [writer.candidate(task, _entity_passage(s, towns[s], task_rng), None) for s in entity_lists[name]]
    for name, task in it2t.items():
        task_rng = seeded_rng(task.name + "/queries")
        other = pools["infoseek" if name == "oven" else "oven"]
        queries = []
        for i, scene in enumerate(entity_lists[name][: task.n_queries]):
            question = (task_rng.choice(("What is this landmark?", "What is the name of this landmark?",
                                    "Which landmark is shown here?"))
                        if name == "oven" else
                        task_rng.choice(("In which town is this landmark?", "When was this landmark put up?",
                                         "Where is this object found?")))
            positives = [pools[name][i]["did"]] + ([other[i]["did"]] if i < CROSS_DATASET_QUERIES else [])
            image = writer.image(name, scene_image(scene, f"{task.name}/{i}"))
            queries.append(writer.query(task, question, image, positives))
        writer.write(task, queries, pools[name])
    for name in ("oven", "infoseek"):
        task = _task(f"mini.mbeir.{name}.it2it")
        task_rng = seeded_rng(task.name)
        entities = [next(rest) for _ in range(task.pool_size)]
        pool = [
            writer.candidate(task, _entity_passage(s, towns[s], task_rng),
                             writer.image(name, scene_image(s, f"{task.name}/pool/{i}")))
            for i, s in enumerate(entities)
        ]
        queries = [
            writer.query(task, task_rng.choice(("What is this?", "Which landmark is this?", "Where is this?")),
                         writer.image(name, scene_image(s, f"{task.name}/query/{i}")), [pool[i]["did"]])
            for i, s in enumerate(entities[: task.n_queries])
        ]
        writer.write(task, queries, pool)


def _composed(writer: _MbeirWriter, task: MiniTask, dataset: str, targets: list, draw: Callable[[Any, str], Any],
              change_of: Callable[[Any, int], tuple[Any, str]]) -> None:
    """A composed-retrieval task: (reference image, change) -> its target, the pool being the targets."""
    pool = [writer.candidate(task, None, writer.image(dataset, draw(t, f"{task.name}/pool/{i}")))
            for i, t in enumerate(targets)]
    queries = []
    for i, target in enumerate(targets[: task.n_queries]):
        reference, change = change_of(target, i)
        image = writer.image(dataset, draw(reference, f"{task.name}/query/{i}"))
        queries.append(writer.query(task, change, image, [pool[i]["did"]]))
    writer.write(task, queries, pool)


def _fashioniq(writer: _MbeirWriter) -> None:
    """(reference garment, change) -> target garment of the same kind in another colour or pattern."""
    task = _task("mini.mbeir.fashioniq.it2i")
    rng = seeded_rng(task.name)

    def change_of(target: Any, i: int) -> tuple[Any, str]:
        if i % 2 == 0:
            reference = replace(target, colour=(target.colour + 1 + rng.randrange(len(COLOURS) - 1)) % len(COLOURS))
            return reference, f"is {COLOURS[target.colour][0]} instead of {COLOURS[reference.colour][0]}"
        reference = replace(target, pattern=(target.pattern + 1 + rng.randrange(2)) % len(PATTERNS))
        return reference, f"is {PATTERNS[target.pattern]} and not {PATTERNS[reference.pattern]}"

    _composed(writer, task, "fashioniq", distinct_garments(rng, task.pool_size), garment_image, change_of)


def _cirr(writer: _MbeirWriter) -> None:
    """(reference scene, modification) -> target scene with one attribute changed."""
    task = _task("mini.mbeir.cirr.it2i")
    rng = seeded_rng(task.name)
    _composed(writer, task, "cirr", distinct_scenes(rng, task.pool_size), scene_image,
              lambda target, i: modify(target, i, rng))
