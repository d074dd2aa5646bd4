"""The mini benchmark's CIRCO layout: COCO-style 12-digit JPEGs, their image info and the annotations."""

from __future__ import annotations

import json
from pathlib import Path

from mbench.data.mini.scenes import (
    IMAGE_SIZE,
    OBJECTS,
    PLACES,
    Scene,
    distinct_scenes,
    modify,
    save_jpeg,
    scene_image,
    seeded_rng,
    write_text,
)
from mbench.formats.circo import write_circo_annotations

CIRCO_CORPUS = 120
CIRCO_QUERIES = 20



# ---------------------------------------------------------------- CIRCO layout


def generate_circo(folder: Path) -> None:
    """CIRCO's layout: COCO-style 12-digit image files and annotations with several ground truths each."""
    rng = seeded_rng("circo")
    queries = []
    corpus: dict[int, Scene] = {}
    image_ids = rng.sample(range(1, 600000), CIRCO_CORPUS + CIRCO_QUERIES * 6)
    id_iter = iter(sorted(image_ids, key=lambda i: rng.random()))
    # Each query: one reference, 2-4 ground-truth variants of the modified scene (differing in count).
    bases = distinct_scenes(rng, CIRCO_QUERIES * 2)
    for number in range(CIRCO_QUERIES):
        target = bases[number]
        reference, caption = modify(target, number, rng)
        reference_id = next(id_iter)
        corpus[reference_id] = reference
        # The ground truths are renderings of the same scene (their jitter is seeded by the image id).
        gt_ids = [next(id_iter) for _ in range(2 + number % 3)]
        for image_id in gt_ids:
            corpus[image_id] = target
        queries.append({
            "reference_img_id": reference_id,
            "target_img_id": gt_ids[0],
            "relative_caption": caption,
            "shared_concept": f"{OBJECTS[target.obj][1]} {PLACES[target.place][1]}",
            "gt_img_ids": gt_ids,
            "id": number,
            "semantic_aspects": ["addition" if number % 3 == 2 else "attribute"],
        })
    # Distractors fill the corpus: other scenes, some sharing the query scenes' object or place.
    judged = {(s.colour, s.obj, s.place) for s in bases[:CIRCO_QUERIES]}
    for scene in bases[CIRCO_QUERIES:] + distinct_scenes(seeded_rng("circo/distractors"), CIRCO_CORPUS):
        if len(corpus) >= CIRCO_CORPUS:
            break
        if (scene.colour, scene.obj, scene.place) not in judged:  # an unjudged true match would be a false negative
            corpus[next(id_iter)] = scene
    for image_id in sorted(corpus):
        save_jpeg(scene_image(corpus[image_id], f"circo/{image_id}"), folder / "unlabeled2017" / f"{image_id:012d}.jpg")
    info = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": IMAGE_SIZE, "height": IMAGE_SIZE}
                       for i in sorted(corpus)]}
    write_text(folder / "image_info_unlabeled2017.json", json.dumps(info))
    write_circo_annotations(folder / "annotations" / "val.json", queries)
