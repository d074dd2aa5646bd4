"""The mini benchmark's shared material: its vocabulary, rendered scenes and garments, and the
deterministic random streams, JPEG settings and text writing every layout uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from mbench.formats.atomic import atomic_write_bytes

T = TypeVar("T")

MINI_VERSION = "mini-v1"
IMAGE_SIZE = 96
JPEG_QUALITY = 90

COLOURS = (
    ("red", (220, 30, 30)), ("green", (30, 160, 60)), ("blue", (30, 70, 220)), ("yellow", (240, 210, 30)),
    ("purple", (130, 50, 170)), ("orange", (245, 140, 20)), ("white", (245, 245, 245)), ("black", (20, 20, 20)),
    ("pink", (245, 130, 180)), ("brown", (120, 70, 30)),
)
# noun, plural, shape drawn
OBJECTS = (
    ("ball", "balls", "disc"), ("box", "boxes", "square"), ("tent", "tents", "triangle"),
    ("kite", "kites", "diamond"), ("star", "stars", "star"), ("ring", "rings", "ring"),
    ("flag", "flags", "flag"), ("cross", "crosses", "cross"),
)
# name, phrase, sky colour, ground colour
PLACES = (
    ("beach", "on the beach", (135, 200, 235), (235, 215, 170)),
    ("forest", "in the forest", (70, 120, 70), (30, 80, 30)),
    ("snow", "in the snow", (200, 220, 240), (250, 250, 250)),
    ("desert", "in the desert", (250, 200, 120), (220, 170, 90)),
    ("street", "on a city street", (170, 170, 180), (90, 90, 95)),
    ("night", "under the night sky", (10, 15, 50), (30, 30, 40)),
    ("meadow", "in a meadow", (140, 200, 250), (120, 200, 90)),
    ("lake", "by the lake", (180, 210, 240), (40, 110, 180)),
)
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
GARMENTS = (
    ("dress", "dresses"), ("shirt", "shirts"), ("skirt", "skirts"), ("jacket", "jackets"),
    ("hat", "hats"), ("bag", "bags"), ("shoe", "shoes"), ("scarf", "scarves"),
)
PATTERNS = ("plain", "striped", "dotted")
MATERIALS = ("cotton", "silk", "denim", "wool", "leather", "linen")
EVENTS = ("spring festival", "city parade", "charity race", "harvest fair", "art exhibition", "election rally")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TOWNS = (
    "Ashby", "Brenton", "Caldwell", "Dunmore", "Elmsworth", "Fairhaven", "Glenrock", "Harwick", "Ivybridge",
    "Kestrel", "Larkspur", "Marlow", "Norbury", "Oakhurst", "Pemberton", "Quarry Bay", "Redfield", "Stonehill",
    "Thornbury", "Upton", "Valemont", "Westcliff", "Yarrow", "Zennor", "Aldmere", "Birchwood", "Coldstream",
    "Dovecote", "Eastwick", "Foxley", "Greywater", "Hollins", "Ironbridge", "Juniper", "Kingsmoor", "Lowther",
    "Millbrook", "Newhaven", "Ormsby", "Pinecrest",
)

# Star outline at radius 100 (integer coordinates, so no libm rounding differs between machines).
_STAR = ((0, -100), (22, -31), (95, -31), (36, 12), (59, 81), (0, 38), (-59, 81), (-36, 12), (-95, -31), (-22, -31))


# ---------------------------------------------------------------- vocabulary and texts


@dataclass(frozen=True)
class Scene:
    """A rendered scene: ``count`` objects of one colour in a place."""

    colour: int
    obj: int
    place: int
    count: int

    def noun(self) -> str:
        """The object noun, plural when there are several."""
        singular, plural, _ = OBJECTS[self.obj]
        return singular if self.count == 1 else plural

    def phrase(self) -> str:
        """``two red balls on the beach``."""
        return f"{COUNT_WORDS[self.count]} {COLOURS[self.colour][0]} {self.noun()} {PLACES[self.place][1]}"


def _all_scenes() -> list[Scene]:
    return [
        Scene(c, o, p, n)
        for c in range(len(COLOURS)) for o in range(len(OBJECTS)) for p in range(len(PLACES)) for n in (1, 2, 3)
    ]


def _distinct(rng: random.Random, everything: list[T], key: Callable[[T], tuple], n: int) -> list[T]:
    """The first ``n`` of a shuffle of ``everything`` whose ``key`` has not been seen before."""
    seen, out = set(), []
    for thing in rng.sample(everything, len(everything)):
        if key(thing) not in seen:
            seen.add(key(thing))
            out.append(thing)
        if len(out) == n:
            break
    return out


def distinct_scenes(rng: random.Random, n: int) -> list[Scene]:
    """``n`` scenes that differ in (colour, object, place), so each caption has one true image."""
    return _distinct(rng, _all_scenes(), lambda scene: (scene.colour, scene.obj, scene.place), n)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def everyday_caption(scene: Scene, variant: int) -> str:
    """One of two plain captions of ``scene`` (MSCOCO style)."""
    colour, place = COLOURS[scene.colour][0], PLACES[scene.place][1]
    be = "is" if scene.count == 1 else "are"
    count = COUNT_WORDS[scene.count]
    templates = (
        f"{_cap(scene.phrase())}.",
        f"A photo of {scene.phrase()}.",
        f"There {be} {count} {colour} {scene.noun()} {place}.",
        f"{_cap(count)} {scene.noun()} painted {colour}, seen {place}.",
        f"Close-up of {scene.phrase()} on a clear day.",
    )
    return templates[variant % len(templates)]


def news_caption(scene: Scene, rng: random.Random) -> str:
    """A news-style caption of ``scene`` naming an event and a day drawn from ``rng``."""
    event, day = rng.choice(EVENTS), rng.choice(DAYS)
    verb = "stands" if scene.count == 1 else "stand"
    templates = (
        f"Visitors look at {scene.phrase()} during the {event} on {day}.",
        f"{_cap(scene.phrase())} {verb} ready ahead of the {event}, officials said on {day}.",
        f"Residents set up {scene.phrase()} for the {event} on {day}.",
    )
    return rng.choice(templates)


@dataclass(frozen=True)
class Garment:
    """A fashion product: a garment type in a colour with a pattern."""

    kind: int
    colour: int
    pattern: int
    material: int

    def description(self) -> str:
        """A Fashion200K-like product description."""
        pattern = PATTERNS[self.pattern]
        pattern = "" if pattern == "plain" else f" {pattern}"
        return f"{COLOURS[self.colour][0]}{pattern} {MATERIALS[self.material]} {GARMENTS[self.kind][0]}"


def distinct_garments(rng: random.Random, n: int) -> list[Garment]:
    """``n`` garments that differ in (kind, colour, pattern)."""
    everything = [
        Garment(k, c, p, m)
        for k in range(len(GARMENTS)) for c in range(len(COLOURS)) for p in range(len(PATTERNS))
        for m in range(len(MATERIALS))
    ]
    return _distinct(rng, everything, lambda garment: (garment.kind, garment.colour, garment.pattern), n)


# ---------------------------------------------------------------- images


def scene_image(scene: Scene, jitter_seed: str) -> Any:
    """``scene`` rendered as a PIL image; ``jitter_seed`` moves the objects a little, deterministically."""
    from PIL import Image, ImageDraw

    rng = random.Random(jitter_seed)
    _, _, sky, ground = PLACES[scene.place]
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), sky)
    draw = ImageDraw.Draw(image)
    horizon = 40 + rng.randint(-3, 3)
    draw.rectangle((0, horizon, IMAGE_SIZE, IMAGE_SIZE), fill=ground)
    slots = {1: ((48, 58),), 2: ((28, 60), (68, 60)), 3: ((18, 64), (48, 50), (78, 64))}[scene.count]
    for x, y in slots:
        radius = (14 if scene.count < 3 else 11) + rng.randint(-1, 2)
        _draw_shape(draw, OBJECTS[scene.obj][2], x + rng.randint(-3, 3), y + rng.randint(-3, 3), radius,
                    COLOURS[scene.colour][1])
    return image


def _draw_shape(draw, shape: str, x: int, y: int, r: int, fill: tuple[int, int, int]) -> None:
    outline = (90, 90, 90)
    if shape == "disc":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline)
    elif shape == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=fill, outline=outline)
    elif shape == "triangle":
        draw.polygon(((x, y - r), (x + r, y + r), (x - r, y + r)), fill=fill, outline=outline)
    elif shape == "diamond":
        draw.polygon(((x, y - r), (x + r * 3 // 4, y), (x, y + r), (x - r * 3 // 4, y)), fill=fill, outline=outline)
    elif shape == "star":
        draw.polygon(tuple((x + dx * r // 100, y + dy * r // 100) for dx, dy in _STAR), fill=fill, outline=outline)
    elif shape == "ring":
        draw.ellipse((x - r, y - r, x + r, y + r), outline=fill, width=max(3, r // 3))
    elif shape == "flag":
        draw.line((x - r, y - r, x - r, y + r), fill=outline, width=2)
        draw.rectangle((x - r + 1, y - r, x + r, y), fill=fill, outline=outline)
    elif shape == "cross":
        w = max(3, r // 3)
        draw.rectangle((x - w, y - r, x + w, y + r), fill=fill)
        draw.rectangle((x - r, y - w, x + r, y + w), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


_GARMENT_SHAPES = {
    "dress": ((38, 14), (58, 14), (62, 36), (78, 86), (18, 86), (34, 36)),
    "shirt": ((30, 16), (66, 16), (86, 32), (76, 44), (66, 36), (66, 82), (30, 82), (30, 36), (20, 44), (10, 32)),
    "skirt": ((32, 24), (64, 24), (80, 78), (16, 78)),
    "jacket": ((30, 12), (66, 12), (88, 72), (77, 75), (66, 42), (66, 86), (30, 86), (30, 42), (19, 75), (8, 72)),
    "hat": ((26, 56), (30, 28), (66, 28), (70, 56), (86, 60), (86, 66), (10, 66), (10, 60)),
    "bag": ((18, 40), (78, 40), (82, 84), (14, 84)),
    "shoe": ((12, 52), (40, 52), (50, 64), (82, 68), (86, 80), (12, 80)),
    "scarf": ((14, 38), (82, 38), (82, 52), (58, 52), (58, 88), (44, 88), (44, 52), (14, 52)),
}


def garment_image(garment: Garment, jitter_seed: str) -> Any:
    """``garment`` rendered as a PIL image; ``jitter_seed`` moves it a little, deterministically."""
    from PIL import Image, ImageDraw

    rng = random.Random(jitter_seed)
    background = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (236, 236, 232))
    colour = COLOURS[garment.colour][1]
    fabric = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour)
    draw = ImageDraw.Draw(fabric)
    contrast = (20, 20, 20) if sum(colour) > 450 else (250, 250, 250)
    if PATTERNS[garment.pattern] == "striped":
        for y in range(rng.randint(0, 3), IMAGE_SIZE, 9):
            draw.rectangle((0, y, IMAGE_SIZE, y + 3), fill=contrast)
    elif PATTERNS[garment.pattern] == "dotted":
        for y in range(4, IMAGE_SIZE, 10):
            for x in range(4 + (y // 10 % 2) * 5, IMAGE_SIZE, 10):
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=contrast)
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    dx, dy = rng.randint(-3, 3), rng.randint(-3, 3)
    outline = tuple((x + dx, y + dy) for x, y in _GARMENT_SHAPES[GARMENTS[garment.kind][0]])
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    background.paste(fabric, (0, 0), mask)
    ImageDraw.Draw(background).polygon(outline, outline=(60, 60, 60))
    if GARMENTS[garment.kind][0] == "bag":
        ImageDraw.Draw(background).arc((30 + dx, 18 + dy, 66 + dx, 62 + dy), 180, 360, fill=(60, 60, 60), width=3)
    return background


def save_jpeg(image: Any, path: Path) -> None:
    """Save a PIL image as a JPEG whose bytes depend only on its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed settings and no metadata: the bytes depend only on the pixels.
    image.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=0)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 (files that are no judgment or table format: the instruction TSV, image info)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def seeded_rng(name: str) -> random.Random:
    """The random stream of one part of the mini benchmark, the same on every machine."""
    # A string seed goes through sha512: the same stream on every machine and Python >= 3.2.
    return random.Random(f"{MINI_VERSION}/{name}")


def modify(target: Scene, i: int, rng: random.Random) -> tuple[Scene, str]:
    """A reference scene one attribute away from ``target`` and the caption that turns it into ``target``."""
    kind = i % 3
    if kind == 0:
        reference = replace(target, colour=(target.colour + 1 + rng.randrange(len(COLOURS) - 1)) % len(COLOURS))
        return reference, f"make the {OBJECTS[target.obj][1]} {COLOURS[target.colour][0]}"
    if kind == 1:
        reference = replace(target, place=(target.place + 1 + rng.randrange(len(PLACES) - 1)) % len(PLACES))
        return reference, f"move the scene {PLACES[target.place][1]}"
    reference = replace(target, count=1 + (target.count % 3))
    noun = target.noun()
    return reference, f"show {COUNT_WORDS[target.count] if target.count > 1 else 'only one'} {noun} instead"
