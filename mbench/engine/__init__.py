"""The evaluation engine: encoding (encode.py), the embedding store (store.py), exact search
(search.py), reranking and scale-out. Nothing is imported here, so `mbench cache` and the
other light commands never pay for torch."""
