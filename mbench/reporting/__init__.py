"""Reporting: reading finished results back and presenting them.

``result_index`` finds results under a results directory and picks the one a cell means,
``leaderboard`` is the schema of a leaderboard spec (which result goes in which cell),
``tables`` fills and renders a spec (markdown, LaTeX, CSV, HTML), ``stats`` holds the paired
significance tests and ``plots`` the figures. Nothing here computes a ranking or a metric.
"""
