"""The mini benchmark's BEIR layout: a text task about fictional towns (corpus, queries, qrels)."""

from __future__ import annotations

from pathlib import Path

from mbench.data.mini.scenes import (
    COLOURS,
    seeded_rng,
)
from mbench.formats.jsonl import write_jsonl
from mbench.formats.qrels import write_qrels

BEIR_TOWNS_DOCS = 200
BEIR_TOWNS_QUERIES = 50



# ---------------------------------------------------------------- BEIR layout: towns


REGIONS = ("on the northern coast", "high in the mountains", "in a wide river valley", "on a small island",
           "on the edge of the plains", "beside a large lake")
LANDMARKS = ("lighthouse", "bridge", "clock tower", "church", "windmill", "castle", "market hall", "watermill")
FESTIVALS = ("kite", "lantern", "music", "harvest", "boat", "cheese", "flower", "wine")
TRADES = ("fishing", "mining", "weaving", "farming", "pottery", "shipbuilding", "tourism", "timber")


def generate_beir_towns(folder: Path) -> None:
    """A BEIR text task: passages about fictional towns, questions about one of their facts."""
    rng = seeded_rng("beir.towns")
    facts = [(r, lm, c, f, t) for r in range(len(REGIONS)) for lm in range(len(LANDMARKS))
             for c in range(len(COLOURS)) for f in range(len(FESTIVALS)) for t in range(len(TRADES))]
    chosen = rng.sample(facts, BEIR_TOWNS_DOCS)
    syllables = ("ash", "bram", "cal", "dun", "el", "fen", "glen", "har", "kel", "lin", "mor", "nor", "oak",
                 "pen", "rad", "sel", "thorn", "wick", "ford", "ton", "by", "mere", "stow", "well")
    # 14 x 14 x 10 distinct names; sampled without replacement so the loop always ends.
    heads, middles, tails = syllables[:14], ("", "a", "e", "i", "o", "u", "ly", "en", "er", "is", "an", "ro", "mi",
                                              "de"), syllables[14:]
    combos = [h + m + t for h in heads for m in middles for t in tails]
    names = [name.capitalize() for name in rng.sample(combos, BEIR_TOWNS_DOCS)]
    docs = []
    for number, (name, (region, landmark, colour, festival, trade)) in enumerate(zip(names, chosen), start=1):
        title = f"{name}"
        text = (
            f"{name} is a small town {REGIONS[region]}. Its best known building is the "
            f"{COLOURS[colour][0]} {LANDMARKS[landmark]}, and every year the town holds a "
            f"{FESTIVALS[festival]} festival. Most people in {name} work in {TRADES[trade]}."
        )
        docs.append({"_id": f"doc{number}", "title": title, "text": text})
    queries, judged = [], []
    for number, index in enumerate(rng.sample(range(BEIR_TOWNS_DOCS), BEIR_TOWNS_QUERIES), start=1):
        name = names[index]
        region, landmark, colour, festival, trade = chosen[index]
        templates = (
            f"Which town has a {COLOURS[colour][0]} {LANDMARKS[landmark]} and a {FESTIVALS[festival]} festival?",
            f"town {REGIONS[region]} where people work in {TRADES[trade]} and celebrate {FESTIVALS[festival]}s",
            f"What do people in {name} do for a living?",
            f"Where is the {COLOURS[colour][0]} {LANDMARKS[landmark]} whose town celebrates a "
            f"{FESTIVALS[festival]} festival?",
        )
        queries.append({"_id": f"q{number}", "text": rng.choice(templates)})
        judged.append((f"q{number}", f"doc{index + 1}"))
    write_jsonl(folder / "corpus.jsonl", docs)
    # Like BEIR's query files, this one also lists queries that have no judgments (they are dropped).
    extra = [{"_id": f"q{BEIR_TOWNS_QUERIES + 1}", "text": "Which town has no festival at all?"}]
    write_jsonl(folder / "queries.jsonl", queries + extra)
    write_qrels(folder / "qrels" / "test.tsv", [q for q, _ in judged], [d for _, d in judged], [1] * len(judged),
                format="beir")
