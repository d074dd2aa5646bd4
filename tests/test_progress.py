"""Progress reporting: plain periodic lines for logs, a bar on a terminal, silence when disabled."""

from __future__ import annotations

import io

from mbench.progress import PlainProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_count_steps_and_rate_units() -> None:
    out = io.StringIO()
    bar = PlainProgress(4, "search", "tiles", rate_unit="cand", stream=out, every=0.0)
    bar.update(1, work=1000)
    bar.update(1, work=1000)
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["search: 1/4 tiles", "search: 2/4 tiles"]
    assert "cand/s" in lines[0] and "ETA" in lines[0]


def test_plain_lines_wait_for_the_interval_and_close_prints_the_final_count() -> None:
    out = io.StringIO()
    bar = PlainProgress(3, "encode queries", "items", stream=out, every=3600.0)
    bar.update(2)
    bar.update(1)
    assert out.getvalue() == ""
    bar.close()
    assert out.getvalue().startswith("encode queries: 3/3 items, ") and "elapsed" in out.getvalue()


def test_a_stream_that_is_not_a_terminal_gets_plain_lines() -> None:
    assert isinstance(progress(5, "rerank", "pairs", stream=io.StringIO()), PlainProgress)


def test_a_terminal_gets_a_redrawn_bar() -> None:
    out = Terminal()
    bar = progress(5, "rerank", "pairs", stream=out)
    bar.update(5)
    bar.close()
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()


def test_disabled_or_empty_progress_prints_nothing() -> None:
    out = io.StringIO()
    for bar in (progress(5, "search", "tiles", enabled=False, stream=out), progress(0, "search", "tiles", stream=out)):
        bar.update(1)
        bar.close()
    assert out.getvalue() == ""
