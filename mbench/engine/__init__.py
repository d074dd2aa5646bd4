"""The evaluation engine, one concept per module:

- ``orchestrate``: a list of tasks with one model, and the optional rerank of each result
  (what `mbench run` calls); ``sweep``: grids of `mbench run`s (local, Slurm, dry run);
- ``pipeline``: one task, from its data to its result folder;
- ``cache/``: the embedding cache (keys, store, store-backed encoder, reranker score cache);
- ``encode``: running a plugin's encoder in batches; ``instructions``: which instruction a query gets;
- ``search``: exact top-k search; ``rescore``: exact final scores of the kept candidates;
  ``ranking``: the ranking rules (depth, tie order, exclusion, merging, rank scores);
  ``distributed``: torchrun ranks;
- ``rerank``: reranking a ranking or a stored result; ``scoring``: metrics of a ranking or a run file.

Nothing is imported here, so `mbench cache` and the other light commands never pay for torch.
"""
