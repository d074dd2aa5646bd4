"""Dataset adapters: turn data on disk (or on the HF hub) into queries, a candidate pool and qrels."""
