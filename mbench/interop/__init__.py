"""Bridges to other evaluation tools: mteb's tasks and result files (the mteb model family lives in models/builtin)."""
