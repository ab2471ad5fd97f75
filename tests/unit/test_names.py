"""User names: the comparison key (NFKC, case folding, UTS #39 skeleton) and the
characters a name may not hold (SPEC sections 4 and 10). No server."""

from __future__ import annotations

from importlib import resources

import pytest
from pydantic import ValidationError

from chatroom_server import protocol
from chatroom_server.names import (
    CONFUSABLES_VERSION,
    comparison_form,
    name_key,
    refused_character,
    skeleton,
)
from chatroom_server.protocol import SignupRequest

ALICE_FORMS = [
    "alice",
    "Alice",
    "ALICE",
    "ａｌｉｃｅ",  # fullwidth
    "\u0430lice",  # Cyrillic а
    "\u0251lice",  # Latin alpha
    "ᴬˡⁱᶜᵉ",  # modifier letters (NFKC)
    " alice ",  # trimmed, as signup trims
]


@pytest.mark.parametrize("form", ALICE_FORMS)
def test_names_that_look_like_alice_share_her_key(form: str) -> None:
    assert name_key(form) == name_key("alice")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("bob", "b0b"),  # 0's prototype is O, folded again after the skeleton
        ("modern", "rnodern"),  # m's prototype is "rn"
        ("paypal", "раураl"),  # all Cyrillic but the l
        ("Straße", "strasse"),  # case folding
        ("ﬁnn", "finn"),  # ligature (NFKC)
        ("café", "cafe\u0301"),  # composed and decomposed
    ],
)
def test_confusable_pairs_are_one_name(one: str, other: str) -> None:
    assert comparison_form(one) == comparison_form(other)
    assert name_key(one) == name_key(other)


@pytest.mark.parametrize(("one", "other"), [("alice", "alicia"), ("bob", "rob"), ("ann", "an")])
def test_different_names_stay_different(one: str, other: str) -> None:
    assert name_key(one) != name_key(other)


def test_the_key_has_a_fixed_size_whatever_the_name_expands_to() -> None:
    # U+FDFA is one character whose NFKC form is 18: 64 of them must still fit the column.
    assert len(name_key("\ufdfa" * protocol.USER_NAME_MAX)) == 64
    assert len(name_key("a")) == 64


def test_skeleton_is_uts39_on_the_official_data() -> None:
    assert skeleton("\u0430") == "a"
    assert skeleton("1") == "l"
    assert skeleton("m") == "rn"
    text = resources.files("chatroom_server.data").joinpath("confusables.txt")
    header = text.read_text(encoding="utf-8-sig")[:600]
    assert f"# Version: {CONFUSABLES_VERSION}" in header
    assert "Unicode" in header and "terms_of_use" in header  # the licence header is kept


@pytest.mark.parametrize(
    ("name", "code_point"),
    [
        ("ali\u202ece", "U+202E"),  # right-to-left override
        ("ali\u2066ce", "U+2066"),  # left-to-right isolate
        ("ali\u200dce", "U+200D"),  # zero-width joiner
        ("ali\u200bce", "U+200B"),  # zero-width space
        ("ali\ufeffce", "U+FEFF"),  # zero-width no-break space (BOM)
        ("ali\u00adce", "U+00AD"),  # soft hyphen
        ("ali\u2028ce", "U+2028"),  # line separator
        ("ali\u2029ce", "U+2029"),  # paragraph separator
        ("ali\x1bce", "U+001B"),  # escape
        ("ali\x85ce", "U+0085"),  # next line (C1)
        ("ali\ue000ce", "U+E000"),  # private use
        ("ali\U000e0001ce", "U+E0001"),  # language tag (format)
        ("ali\U0010fffdce", "U+10FFFD"),  # supplementary private use
        ("ali\U0003fffece", "U+3FFFE"),  # unassigned (a noncharacter)
        ("ali\ud800ce", "U+D800"),  # lone surrogate
    ],
)
def test_refused_characters_are_found_and_signup_says_400_naming_the_field(
    name: str, code_point: str
) -> None:
    assert refused_character(name) == code_point
    body = {"user_name": name, "email": "a@example.com", "password": "password1"}
    with pytest.raises(ValidationError) as caught:
        SignupRequest.model_validate(body)
    assert caught.value.errors()[0]["loc"] == ("user_name",)
    message = str(caught.value)
    assert code_point in message or "control characters" in message  # C0/C1: the older check


@pytest.mark.parametrize("name", ["alice", "Zoë", "李小龙", "José María", "o'neil", "ａｌｉｃｅ"])
def test_ordinary_names_are_allowed(name: str) -> None:
    assert refused_character(name) is None
