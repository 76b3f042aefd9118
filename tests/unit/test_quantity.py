"""Kubernetes resource quantities: parsing, formats and canonical printing."""

from decimal import Decimal

import pytest

from apimachinery.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    ERR_FORMAT_WRONG,
    ERR_SUFFIX,
    canonicalize_quantity,
    format_quantity,
    parse_quantity,
    quantity_format,
    quantity_to_int,
    quantity_to_millis,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        ("100m", Decimal("0.1")),
        ("1.5", Decimal("1.5")),
        ("250u", Decimal("0.00025")),
        ("5n", Decimal("0.000000005")),
        ("2k", Decimal(2000)),
        ("3M", Decimal(3_000_000)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("1Ki", Decimal(1024)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Ti", Decimal(2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("1e3", Decimal(1000)),
        ("12E-3", Decimal("0.012")),
        ("-1", Decimal(-1)),
        ("+5", Decimal(5)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1 Gi", "Gi", "1Gi1", "--1", "1,5"])
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_parse_error_messages_match_kubernetes() -> None:
    with pytest.raises(ValueError) as exc:
        parse_quantity("abc")
    assert str(exc.value) == ERR_FORMAT_WRONG
    assert "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" in ERR_FORMAT_WRONG
    with pytest.raises(ValueError) as exc:
        parse_quantity("1Mk")
    assert str(exc.value) == ERR_SUFFIX


def test_format_is_remembered() -> None:
    assert quantity_format("1Gi") == BINARY_SI
    assert quantity_format("1G") == DECIMAL_SI
    assert quantity_format("100") == DECIMAL_SI
    assert quantity_format("1e3") == DECIMAL_EXPONENT


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (Decimal("0.5"), DECIMAL_SI, "500m"),
        (Decimal("1.5"), DECIMAL_SI, "1500m"),
        (Decimal(1000), DECIMAL_SI, "1k"),
        (Decimal(1500), DECIMAL_SI, "1500"),
        (Decimal(0), DECIMAL_SI, "0"),
        (Decimal("0.0001"), DECIMAL_SI, "100u"),
        (Decimal("1e-10"), DECIMAL_SI, "1n"),  # rounded up to the nano
        (Decimal(-2000), DECIMAL_SI, "-2k"),
        (Decimal(2**30), BINARY_SI, "1Gi"),
        (Decimal(1536 * 2**20), BINARY_SI, "1536Mi"),
        (Decimal(512), BINARY_SI, "512"),  # below 1024 binary prints plainly
        (Decimal("0.5"), BINARY_SI, "500m"),  # fractions fall back to decimal
        (Decimal(1000), BINARY_SI, "1k"),  # below 1024: decimal
        (Decimal(1500), BINARY_SI, "1500"),
        (Decimal(2000), DECIMAL_EXPONENT, "2e3"),
        (Decimal("0.5"), DECIMAL_EXPONENT, "500e-3"),
    ],
)
def test_format_quantity(value: Decimal, fmt: str, text: str) -> None:
    assert format_quantity(value, fmt) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1024Mi", "1Gi"),
        ("2048Ki", "2Mi"),
        ("1e3", "1e3"),
        ("1000", "1k"),
        ("100m", "100m"),
    ],
)
def test_canonicalize_keeps_format(text: str, canonical: str) -> None:
    assert canonicalize_quantity(text) == canonical


def test_millis_and_int_round_up() -> None:
    assert quantity_to_millis("100m") == 100
    assert quantity_to_millis("1.5") == 1500
    assert quantity_to_millis("1u") == 1
    assert quantity_to_int("1Ki") == 1024
    assert quantity_to_int("1.2") == 2


def test_comparisons_across_suffixes() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000m") == parse_quantity("1")
    assert parse_quantity("500Mi") < parse_quantity("1Gi")
