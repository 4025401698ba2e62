"""Dataset names: the one rule that turns any text, or a file's name, into a dataset name.

A name is lower case letters of any script, digits and `_`, never starts with `_` or a digit
(people write SQL by hand here) and has at most MAX_NAME_LENGTH characters. The same text
always gives the same name, and a name gives itself back.
"""

from __future__ import annotations

import re
import unicodedata

# Long enough for descriptive names, short enough to stay readable in SQL and URLs.
MAX_NAME_LENGTH = 63

# Everything that is not a letter, digit or underscore in any script becomes an underscore.
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)

# Extensions a file name loses on its way to a dataset name, at most two of them
# (sales.csv.gz → sales); a dotted name like v1.2.csv keeps its first dot part.
KNOWN_EXTENSIONS = frozenset(
    {"csv", "tsv", "tab", "txt", "parquet", "pq", "json", "ndjson", "jsonl", "gz", "gzip"}
    | {"xlsx", "xlsm", "xls", "ods"}
)


class InvalidName(ValueError):
    """Nothing usable is left of the text to make a name of."""

    def __init__(self, text: str) -> None:
        self.text = str(text)
        super().__init__(
            f"{self.text[:80]!r} cannot be made into a dataset name: use letters, digits "
            "and underscores."
        )


def normalise_name(text: str) -> str:
    """A safe dataset name from any text; raises InvalidName when nothing usable is left
    (e.g. only punctuation)."""
    folded = unicodedata.normalize("NFKC", str(text)).lower()
    folded = unicodedata.normalize("NFKC", folded)
    name = _NOT_WORD.sub("_", folded).strip("_")
    name = re.sub(r"_{2,}", "_", name)
    if name and name[0].isdigit():
        # SQL identifiers cannot start with a digit unquoted.
        name = "t_" + name
    name = name[:MAX_NAME_LENGTH].rstrip("_")
    if not name:
        raise InvalidName(text)
    return name


def is_valid_name(text: str) -> bool:
    """Whether `text` is a dataset name as it is (normalising it changes nothing)."""
    try:
        return normalise_name(text) == text
    except InvalidName:
        return False


def file_stem(filename: str) -> str:
    """A file's base name without directories and known extensions (not yet a name)."""
    stem = re.split(r"[\\/]", filename)[-1]
    for _ in range(2):
        head, dot, ext = stem.rpartition(".")
        if dot and head and ext.lower() in KNOWN_EXTENSIONS:
            stem = head
    return stem


def name_from_filename(filename: str) -> str:
    """The dataset name an uploaded file gets by default; raises InvalidName."""
    return normalise_name(file_stem(filename))


def suggested_name(filename: str) -> str:
    """The name a client proposes for a file: name_from_filename, or the bare stem when nothing
    usable is left of it, so that the server's refusal names what the person gave."""
    try:
        return name_from_filename(filename)
    except InvalidName:
        return file_stem(filename)
