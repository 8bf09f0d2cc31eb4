"""Identifier syntax (DESIGN §2), property-based."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idnode.core import identifiers
from idnode.core.errors import InvalidIdentifier

segment = st.one_of(st.just("0"), st.integers(1, 9_999_999_999).map(str))
prefixes = st.lists(segment, min_size=2, max_size=6).map(".".join).filter(
    lambda p: len(p) <= identifiers.MAX_PREFIX_LEN)
safe_chars = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp", "Zs"))
suffixes = st.text(safe_chars, min_size=1, max_size=60).filter(
    lambda s: len(unicodedata.normalize("NFC", s).encode()) <= identifiers.MAX_SUFFIX_BYTES)


@given(prefixes, suffixes)
def test_valid_identifiers_parse_and_print_back_normalised(prefix: str, suffix: str) -> None:
    ident = identifiers.parse(f"{prefix}/{suffix}")
    assert ident.prefix == prefix
    assert ident.suffix == unicodedata.normalize("NFC", suffix)
    assert identifiers.parse(str(ident)) == ident


@given(prefixes, suffixes)
def test_parsing_is_idempotent_and_splits_at_first_slash(prefix: str, suffix: str) -> None:
    text = f"{prefix}/{suffix}/tail"
    ident = identifiers.parse(text)
    assert ident.suffix.endswith("/tail")


@given(prefixes, st.text(min_size=1, max_size=20), st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\x85", "\u200b", "\u202e", "\ufeff", " ", "\u3000", "\u2028"]))
def test_control_format_and_space_characters_are_refused(prefix: str, text: str, bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        identifiers.parse(f"{prefix}/{text}{bad}")


def test_nfd_and_nfc_spellings_name_one_identifier() -> None:
    nfd = unicodedata.normalize("NFD", "0.118.8/Café")
    assert identifiers.parse(nfd) == identifiers.parse("0.118.8/Café")


@pytest.mark.parametrize("text", [
    "", "0.118.8", "0.118.8/", "/x", "88/x", "0.118.08/x", "88..118/x", "0.118./x",
    ".88.118/x", "a.b/x", "0.118.8a/x", "８８.118/x", "0.118.8/" + "x" * 256,
    "0.118.8/" + "字" * 86, "1" * 70 + ".1/x",
])
def test_malformed_identifiers_are_refused(text: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        identifiers.parse(text)
    assert err.value.field == "identifier"


def test_suffix_length_is_counted_in_utf8_bytes() -> None:
    identifiers.parse("0.118.8/" + "字" * 85)  # 255 bytes
    with pytest.raises(InvalidIdentifier):
        identifiers.parse("0.118.8/" + "字" * 85 + "x")


def test_suffix_is_case_sensitive() -> None:
    assert identifiers.parse("0.118.8/abc") != identifiers.parse("0.118.8/ABC")


@pytest.mark.parametrize("suffix", [".", "..", "./x", "../x", "a/.", "a/..", "a/./b", "a/../b",
                                    "a/b/../../c"])
def test_new_identifiers_may_not_have_dot_segments(suffix: str) -> None:
    text = "0.118.8/" + suffix
    with pytest.raises(InvalidIdentifier) as err:
        identifiers.parse_new(text, field="records[0].identifier")
    assert err.value.reason == "DOT_SEGMENT" and err.value.field == "records[0].identifier"
    segment = ".." if ".." in suffix else "."
    assert f"{segment!r} path segment" in err.value.message
    assert identifiers.parse(text).suffix == suffix  # registered ones still parse (resolve)


@pytest.mark.parametrize("suffix", ["a.b", ".x", "x.", "...", "a/.../b", "a/.b/c", "v1.0/..x",
                                    "a//b"])
def test_dots_inside_a_segment_are_fine_for_new_identifiers(suffix: str) -> None:
    assert identifiers.parse_new("0.118.8/" + suffix).suffix == suffix
