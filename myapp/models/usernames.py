"""The username rule, shared by the API, the pages and the CLI.

People's names are in many scripts ("Zoë Müller", "Иван", "李雷"), so a username is letters of
any script with digits, dots, dashes, underscores and single spaces between words. Two names are
one account when they differ only in case or Unicode form (NFC, then case-folded). Because
usernames are what people recognise each other by (in the audit log, the admin pages), a new
name is refused when it merely looks like an existing one: a name that mixes scripts (a Latin
name with one Cyrillic letter in it) is refused outright, and names are compared by a skeleton
that maps look-alike letters (Cyrillic and Greek letters shaped like Latin ones, fullwidth
forms, digits shaped like letters) to one representative, after Unicode's confusable
detection (UTS #39).
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 64
RULE = (
    "A username is 1 to 64 letters (of any alphabet), digits, dots, dashes, underscores or single "
    "spaces between words, starting with a letter or digit, all letters from one alphabet."
)
_PUNCTUATION = frozenset("._- ")
# Scripts that are written together with Latin in ordinary names (Japanese mixes Han and kana).
_COMPATIBLE = {
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
}

# Letters drawn like Latin letters in common fonts (from Unicode's confusables.txt: Cyrillic,
# Greek and Armenian lowercase look-alikes), each mapped to the Latin letter it passes for.
# Written as escapes so this file does not itself hold look-alikes.
_LOOKALIKE_PAIRS = (
    # Cyrillic
    (
        "\u0430\u0432\u0441\u0501\u0435\u04bb\u0456\u0458\u043a\u04cf"
        "\u043c\u043f\u043e\u0440\u051b\u0455\u0442\u0475\u051d\u0445"
        "\u0443\u04af\u0437\u044c\u0461",
        "abcdehijklmnopqstvwxyy3bw",
    ),
    # Greek
    (
        "\u03b1\u03b2\u03f2\u03b5\u03b7\u03b9\u03ba\u03bd\u03bf\u03c1"
        "\u03c4\u03c7\u03b3\u03c9\u03f3\u03b6\u03c5",
        "abcenikvoptxywjzu",
    ),
    # Armenian
    (
        "\u0585\u057d\u0566\u0581\u0570\u0578",
        "ouqghn",
    ),
    # Latin letters and digits that read as others
    (
        "\u0131\u0142\u017f\u0261015",
        "ilfgols",
    ),
)
_LOOKALIKE = str.maketrans(
    "".join(a for a, _ in _LOOKALIKE_PAIRS), "".join(b for _, b in _LOOKALIKE_PAIRS)
)


def normalize(username: str) -> str:
    """The stored form: NFC, trimmed, lowercase (what 'the same name' means for lookups)."""
    return unicodedata.normalize("NFC", username.strip()).lower()


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "UNKNOWN"
    first = name.split()[0]
    if first == "CJK":
        return "HAN"
    return first


def scripts(username: str) -> set[str]:
    return {s for ch in username if (s := _script(ch)) is not None}


def _single_script(found: set[str]) -> bool:
    if len(found) <= 1:
        return True
    return any(found <= allowed for allowed in _COMPATIBLE) or (
        "LATIN" in found and any(found - {"LATIN"} <= allowed for allowed in _COMPATIBLE)
    )


def problem(username: str) -> str | None:
    """Why this username cannot be used, or None when it follows the rule."""
    name = unicodedata.normalize("NFC", username)
    if not name or len(name) > MAX_LENGTH or name != name.strip():
        return RULE
    if "  " in name or not (name[0].isalnum()):
        return RULE
    for ch in name:
        category = unicodedata.category(ch)
        if ch in _PUNCTUATION or category[0] in ("L", "M") or category == "Nd":
            continue
        return RULE
    if not _single_script(scripts(name)):
        return (
            "A username cannot mix alphabets (such as Latin and Cyrillic letters that look "
            "alike); write it in one."
        )
    return None


def skeleton(username: str) -> str:
    """What the name looks like: two names with one skeleton are easily mistaken."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    decomposed = unicodedata.normalize("NFD", folded.translate(_LOOKALIKE))
    # Case-folding and look-alikes first, then the marks stay: "zoe" and "zoë" are two names.
    text = unicodedata.normalize("NFC", decomposed)
    return "".join(" " if ch in "._-" else ch for ch in text).replace("rn", "m")
