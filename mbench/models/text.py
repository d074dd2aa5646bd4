"""UniIR's text normalisation (M-BEIR's ``format_string``) and its query-text composition.

Mirrors TIGER-AI-Lab/UniIR ``src/data/preprocessing/utils.py::format_string`` and the query
side of ``src/data/mbeir_dataset.py`` (``MBEIRMainDataset``/``MBEIRInferenceOnlyDataset``):
the instruction is normalised on its own, joined to the *raw* query text with one space, and
the joined string is normalised again; candidate texts are normalised without an instruction.
"""

from __future__ import annotations


def uniir_format_string(text: str | None) -> str:
    """Drop "\\r", strip whitespace then double quotes, capitalise the first letter, end with . ? or !.

    Only double quotes are stripped, and whitespace is not stripped again after them, exactly as
    UniIR does; None and the empty string give "".
    """
    text = (text or "").replace("\r", "").strip().strip('"')
    if text:
        text = text[0].upper() + text[1:]
        if text[-1] not in (".", "?", "!"):
            text += "."
    return text


def uniir_query_text(instruction: str | None, text: str | None) -> str:
    """The query text UniIR encodes: ``format_string(format_string(instruction) + " " + text)``, or just the text.

    An image-only query with an instruction thus gets the instruction alone as its text
    ("Retrieve ... image." with the trailing space stripped), which UniIR encodes and fuses.
    """
    if instruction is None:
        return uniir_format_string(text)
    return uniir_format_string(f"{uniir_format_string(instruction)} {text or ''}")
