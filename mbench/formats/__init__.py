"""File formats: one reader and one writer per format, used by every command and adapter alike.

``atomic`` (the one way a file is written), ``columns`` (reading raw, JSON and column files with
file:line errors), ``qrels`` (TREC, M-BEIR and BEIR judgments), ``circo`` (CIRCO annotations),
``runs`` (TREC run files), ``submission`` (CIRCO submissions) and ``jsonl`` (JSON-lines tables).
Nothing is imported here, so a command pays only for the formats it reads.
"""
