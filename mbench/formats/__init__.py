"""File formats: one reader and one writer per format, used by every command and adapter alike.

``atomic`` (the one way a file is written), ``columns`` (reading raw, JSON and column files with
file:line errors), ``qrels`` (TREC, M-BEIR and BEIR judgments), ``circo`` (CIRCO annotations),
``runs`` (TREC run files), ``submission`` (CIRCO submissions), ``jsonl`` (JSON-lines tables),
``specfile`` (the YAML spec files, read safely and strictly) and ``checked_json`` (manifests,
shard records and result.json, carrying a checksum of their own bytes).
Nothing is imported here, so a command pays only for the formats it reads.
"""
