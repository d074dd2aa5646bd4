"""Which instruction each query gets: the harness decides, plugins only format.

Policies: ``first`` (prompt 1 of the task, what the MM-Embed paper uses), ``seeded`` (one of
the task's instructions per query, picked by a hash of (seed, qid), so the choice never
depends on batch size, worker count or world size — unlike UniIR's rank-seeded
``random.choice``), and ``none``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

InstructionPolicy = Literal["first", "seeded", "none"]
INSTRUCTION_POLICIES: tuple[str, ...] = ("first", "seeded", "none")


def seeded_choice(seed: int, qid: str, n_choices: int) -> int:
    """A choice in ``range(n_choices)`` that depends only on (seed, qid)."""
    digest = hashlib.sha256(f"{seed}\x1f{qid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_choices


def resolve_instructions(
    instructions: Sequence[str], qids: Sequence[str], policy: str, seed: int = 0
) -> list[str | None]:
    """The instruction of every query under ``policy`` (None where the task or policy has none)."""
    if policy not in INSTRUCTION_POLICIES:
        raise ValueError(f"unknown instruction policy {policy!r}: expected one of {', '.join(INSTRUCTION_POLICIES)}")
    if policy == "none" or not instructions:
        return [None] * len(qids)
    if policy == "first":
        return [instructions[0]] * len(qids)
    return [instructions[seeded_choice(seed, qid, len(instructions))] for qid in qids]
