"""Every input of the nasty corpus (tests/campaign/corpus.py) through the `mbench` command line.

Each refused input ends with exit code 2 and one message naming the file and the line, JSON path
or id; each accepted one (a BOM, CRLF, tabs, gzip, a long or unicode id) prints exactly what
its clean twin prints; none ends in a traceback. Every case is a regression test of the defect
the reliability campaign found with it, or a guard of a behaviour that was already right.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.corpus import Material, NastyCase, material_in, nasty_cases, run_case
from campaign.outcome import CliResult

CASES = {case.name: case for case in nasty_cases(Material(Path("unused"), Path("unused")))}


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module's cases; the mini benchmark is generated in it once."""
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def twins() -> dict[str, CliResult]:
    """The output of each clean case, for the accepted cases that must reproduce it."""
    return {}


def _run(case: NastyCase, root: Path, twins: dict[str, CliResult]):
    material = material_in(root)
    cases = {c.name: c for c in nasty_cases(material)}
    if case.same_as is not None and case.same_as not in twins:
        run_case(cases[case.same_as], root / f"twin-{case.same_as.replace('/', '-')}", twins)
    return run_case(cases[case.name], root / f"case-{case.name.replace('/', '-')}", twins)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nasty_input_ends_cleanly(name: str, corpus_root: Path, twins: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MBENCH_CACHE", str(corpus_root / "mbench"))
    monkeypatch.delenv("MBENCH_FAULT", raising=False)
    verdict = _run(CASES[name], corpus_root, twins)
    assert verdict.clean, verdict.detail
