"""User names: the characters a name may hold, and the key under which two names are one.

Two names are one when they match after NFKC, case folding and the confusables
skeleton of Unicode's UTS #39 (section 4): `alice`, `Alice`, fullwidth `ａｌｉｃｅ`
and `аlice` with a Cyrillic `а` all get one key, so nobody can sign up as a name
that looks like somebody else's.

The skeleton's data is Unicode's own confusables.txt (version 13.0.0, its licence
header kept), shipped in chatroom_server/data/. No maintained PyPI package
implements skeleton(): `confusable_homoglyphs` (3.3.1) answers "is this string
confusable" from a derived JSON table but has no prototype mapping, and
`confusables` (1.2.0, last release 2021) adds its own extra pairs and returns every
possible normalisation rather than the one skeleton. The algorithm is four lines;
the data is what matters, and it is the official file.

Changing any of this changes keys already stored (users.name_key, migration 0003):
a change needs a migration that recomputes them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import cache
from importlib import resources

CONFUSABLES_VERSION = "13.0.0"

# General categories a name may not contain: controls (Cc), format characters (Cf:
# bidi overrides and isolates, zero-width joiners and spaces, soft hyphens), line
# and paragraph separators (Zl, Zp), surrogates (Cs), private use (Co) and code
# points unassigned in Python's Unicode tables (Cn). Each one lets a name render as
# something other than what it is, or as nothing at all.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def refused_character(name: str) -> str | None:
    """The first character a user name may not hold, as `U+XXXX`, or None."""
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


@cache
def _prototypes() -> dict[str, str]:
    """confusables.txt as {source character: its prototype string}."""
    table: dict[str, str] = {}
    text = resources.files("chatroom_server.data").joinpath("confusables.txt")
    for line in text.read_text(encoding="utf-8-sig").splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target, _kind = (field.strip() for field in data.split(";"))
        table[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def skeleton(text: str) -> str:
    """UTS #39 skeleton(): NFD, each character to its prototype, NFD again."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in decomposed))


def _fold(text: str) -> str:
    # NFKC around case folding, as Unicode's NFKC_Casefold does: folding can undo
    # a normalisation (and the reverse).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def comparison_form(name: str) -> str:
    """The string two names share when they are one name.

    Folded again after the skeleton: some prototypes are capitals (the digit 0's
    is `O`), so `b0b` and `bob` meet only once the skeleton's capitals are folded.
    """
    return _fold(skeleton(_fold(name.strip())))


def name_key(name: str) -> str:
    """What users.name_key holds: a fixed-size digest of comparison_form.

    A digest, not the string: NFKC and the skeleton can grow a 64-character name
    many times over, past what a unique index can hold on PostgreSQL.
    """
    return hashlib.sha256(comparison_form(name).encode("utf-8")).hexdigest()
