"""The lead value normalisers: phones to E.164, e-mails, UK postcodes, names, yes/no flags and timestamps."""

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms_pipelines.customers import normalise


@pytest.mark.parametrize(
    ("given_number", "expected"),
    [
        ("07700 900123", "+447700900123"),
        ("+44 (0)20 7946 0018", "+442079460018"),
        ("020 7946 0018", "+442079460018"),
        ("0044 7700 900123", "+447700900123"),
        ("12345", None),
        ("not a number", None),
        ("", None),
        (None, None),
        ("07700 9001234567", None),
    ],
)
def test_phone_in_gb(given_number, expected):
    assert normalise.normalise_phone(given_number) == expected


def test_phone_region_follows_the_dealer_country():
    assert normalise.normalise_phone("087 123 4567", "IE") == "+353871234567"
    assert normalise.normalise_phone("087 123 4567", "GB") is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [("John.Smith@EXAMPLE.COM", "John.Smith@example.com"), ("  ada@example.org ", "ada@example.org"), ("not-an-email", None), ("a@localhost", None), ("two@@example.com", None), ("", None)],
)
def test_email(address, expected):
    assert normalise.normalise_email(address) == expected


def test_email_makes_no_dns_lookup(monkeypatch):
    import dns.resolver

    def refuse(*args, **kwargs):
        raise AssertionError("a DNS lookup was made")

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", refuse)
    assert normalise.normalise_email("someone@no-such-domain-for-tests.example") == "someone@no-such-domain-for-tests.example"


@pytest.mark.parametrize(
    ("postcode", "expected"),
    [
        ("ls31jl", "LS3 1JL"),
        ("SW1A 1AA", "SW1A 1AA"),
        ("  ec1a   1bb ", "EC1A 1BB"),
        ("W1A0AX", "W1A 0AX"),
        ("M1 1AE", "M1 1AE"),
        ("gir 0aa", "GIR 0AA"),
        ("BFPO 801", "BFPO 801"),
        ("bfpo1234", "BFPO 1234"),
        ("QA1 1AA", None),  # Q never starts a postcode
        ("LS3 1CL", None),  # C is never in the inward code
        ("12345", None),
        ("LS3", None),
        ("", None),
    ],
)
def test_postcode(postcode, expected):
    assert normalise.normalise_postcode(postcode) == expected


def test_name_is_tidied():
    assert normalise.normalise_name("  Mary \t  Jackson\x00\x07 ") == "Mary Jackson"
    assert normalise.normalise_name("\x1b\x00 ") is None


def test_text_keeps_line_breaks_only_when_asked():
    assert normalise.clean_text("a\r\nb\x0bc\x7f", keep_line_breaks=True) == "a\nbc"
    assert normalise.clean_text("a\r\nb") == "a b"


@pytest.mark.parametrize("word", ["Y", "yes", "TRUE", "1", "checked", True, 1])
def test_flag_true(word):
    assert normalise.parse_flag(word) is True


@pytest.mark.parametrize("word", ["N", "No", "false", "0", "unchecked", False, 0])
def test_flag_false(word):
    assert normalise.parse_flag(word) is False


@pytest.mark.parametrize("word", [None, "", "  "])
def test_flag_not_given(word):
    assert normalise.parse_flag(word) is None


@pytest.mark.parametrize("word", ["maybe", "2", 2, "yes please", 0.5])
def test_flag_unknown_is_refused(word):
    with pytest.raises(ValueError):
        normalise.parse_flag(word)


@given(st.text(max_size=20))
def test_flag_is_never_true_for_an_unknown_word(text):
    try:
        flag = normalise.parse_flag(text)
    except ValueError:
        return
    word = (normalise.clean_text(text) or "").lower()  # what parse_flag reads: control characters removed, spaces trimmed
    assert flag is None or word in (normalise.TRUE_WORDS if flag else normalise.FALSE_WORDS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:22:33+0000", datetime(2024, 5, 1, 10, 22, 33, tzinfo=timezone.utc)),
        ("2024-05-01T10:22:33Z", datetime(2024, 5, 1, 10, 22, 33, tzinfo=timezone.utc)),
        ("2024-05-01T10:22:33+01:00", datetime(2024, 5, 1, 9, 22, 33, tzinfo=timezone.utc)),
        ("2024-07-01 12:00:00", datetime(2024, 7, 1, 11, 0, tzinfo=timezone.utc)),  # local time in London (BST)
        ("2024-01-15 12:00", datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc)),  # GMT
        ("15/01/2024 09:30", datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)),
        (1714558953, datetime(2024, 5, 1, 10, 22, 33, tzinfo=timezone.utc)),
        ("1714558953000", datetime(2024, 5, 1, 10, 22, 33, tzinfo=timezone.utc)),
        (None, None),
        ("", None),
    ],
)
def test_timestamp_to_utc(value, expected):
    assert normalise.parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45", True, [2024], "9" * 30])
def test_unreadable_timestamp(value):
    with pytest.raises(ValueError):
        normalise.parse_timestamp(value)


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True), st.datetimes()))
def test_timestamp_is_utc_or_refused(value):
    try:
        moment = normalise.parse_timestamp(value)
    except ValueError:
        return
    assert moment is None or moment.utcoffset().total_seconds() == 0
