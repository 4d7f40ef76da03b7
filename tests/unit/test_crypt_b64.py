"""Unit tests of the original-compatible base64url codec (edgesec.crypt.b64)."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.crypt import b64


@given(st.binary(max_size=300))
def test_round_trip_unpadded(data: bytes) -> None:
    text = b64.url_encode(data)
    assert "=" not in text
    assert b64.url_decode(text) == (data or None)  # no symbols: fails, as the original


@given(st.binary(max_size=300))
def test_padded_input_accepted(data: bytes) -> None:
    assert b64.url_decode(base64.urlsafe_b64encode(data).decode()) == (data or None)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_never_raises(text: str | bytes) -> None:
    out = b64.url_decode(text)
    assert out is None or isinstance(out, bytes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aGVsbG8", b"hello"),
        ("aGVsbG8=", b"hello"),
        ("aGV*sbG8\n", b"hello"),  # characters outside the alphabet are skipped
        ("_-8", b"\xff\xef"),
        ("", None),
        ("!!!", None),
        ("A", None),  # one symbol leaves three pads: invalid, as the original
        ("====", None),
        ("AA==trailing", b"\x00"),  # the first padded block ends the input
    ],
)
def test_original_semantics(text: str, expected: bytes | None) -> None:
    assert b64.url_decode(text) == expected


def test_std_nopad() -> None:
    assert b64.std_decode_nopad("+/8") == b"\xfb\xff"
    with pytest.raises(ValueError):
        b64.std_decode_nopad("-_8")


@given(st.text(max_size=100))
def test_std_decode_fuzz(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(b64.std_decode_nopad(text), bytes)
