"""The reliability campaign: hostile inputs, killed processes, failing disks, corrupted files and
concurrent runs, each case judged by whether it ended cleanly with nothing lost.

* ``corpus``: the hand-listed nasty inputs, one per file format mbench reads, run through the CLI;
* ``fuzz``: hypothesis strategies and seeded mutations of valid files, checked against an oracle;
* ``crashes``: kills at seeded points, injected ENOSPC/EIO, corruption of stored files, and two
  runs (or a run and `mbench cache gc`) at once on the same roots.

`tests/test_reliability_*.py` run a small fixed-seed slice in CI; `bench/reliability.py` runs the
whole campaign and writes `bench/results/reliability.md`.
"""
