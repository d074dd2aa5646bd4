"""mbench: an evaluation harness for universal multimodal retrieval."""

__version__ = "0.1.0"
