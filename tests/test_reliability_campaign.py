"""A fixed-seed slice of the reliability campaign (the whole one: `python bench/reliability.py`).

Generated inputs against the oracle, seeded mutations of every other input, and on one
`mbench run` scenario (hash-embed on the mini MSCOCO text->image task with a reranker): kills at
seeded points of different stages, a full and a failing disk, damaged cache and result files,
two runs at once, and `mbench cache gc` beside a run. Every case must end cleanly with nothing
lost (see tests/campaign).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from campaign import corpus, fuzz
from campaign.crashes import Campaign, in_environment, stage_of

SEED = 13
SCENARIO = "mini.mbeir.mscoco.t2i"


def assert_clean(verdicts) -> None:
    unclean = [f"{v.name}: {v.detail}" for v in verdicts if not v.clean]
    assert verdicts and not unclean, "\n".join(unclean)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory):
    """The scenario's reference run, ready for the crash cases."""
    base = tmp_path_factory.mktemp("campaign")
    with in_environment(base / "environment-cache"):
        crash = Campaign(base / "crashes", tasks=SCENARIO)
        crash.prepare()
        yield crash


def test_generated_runs_and_qrels_agree_with_the_oracle(tmp_path: Path) -> None:
    with in_environment(tmp_path / "cache"):
        assert_clean(fuzz.fuzz_score(25, SEED, tmp_path))


def test_mutated_inputs_end_cleanly(tmp_path: Path) -> None:
    with in_environment(tmp_path / "cache"):
        assert_clean(fuzz.fuzz_mutations(32, SEED, tmp_path, corpus.material_in(tmp_path / "corpus")))


def test_killed_runs_resume_to_the_reference_recomputing_nothing_finished(campaign: Campaign) -> None:
    points = campaign.kill_points(2, SEED)
    assert len({stage_of(point) for point, _ in points}) == 2  # kills in two different stages
    with in_environment(campaign.base / "environment"):
        assert_clean([campaign.kill_case(point, visit) for point, visit in points])


def test_a_full_and_a_failing_disk_end_cleanly_and_resume(campaign: Campaign) -> None:
    with in_environment(campaign.base / "environment"):
        assert_clean([campaign.io_error_case(kind, point, visit)
                      for kind, point, visit in campaign.io_error_points(2, SEED)])


def test_damaged_cache_and_result_files_are_detected_and_rebuilt(campaign: Campaign) -> None:
    rng = random.Random(SEED)
    with in_environment(campaign.base / "environment"):
        assert_clean([campaign.corruption_case("shard record", "flip", rng),
                      campaign.corruption_case("run file", "truncate", rng)])


def test_two_runs_at_once_and_gc_beside_a_run_end_equal_to_the_reference(campaign: Campaign) -> None:
    with in_environment(campaign.base / "environment"):
        assert_clean([campaign.concurrent_runs_case(0), campaign.gc_beside_run_case(1)])
