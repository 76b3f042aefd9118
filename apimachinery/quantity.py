"""Kubernetes resource quantities (``resource.Quantity``): ``100m``, ``1.5Gi``, ``2e3``.

A quantity is a decimal number followed by an optional suffix:

* binary SI: ``Ki Mi Gi Ti Pi Ei`` (powers of 1024),
* decimal SI: ``n u m "" k M G T P E`` (powers of 1000),
* a decimal exponent: ``e3``, ``E-6``.

Kubernetes remembers which of the three *formats* a quantity was written in and prints it back
canonically in that format (``1536Mi`` stays binary, ``0.5`` becomes ``500m``); see
:func:`format_quantity` and :func:`canonicalize_quantity`.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext

QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT_WRONG = f"quantities must match the regular expression '{QUANTITY_REGEX}'"
ERR_SUFFIX = "unable to parse quantity's suffix"

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_QUANTITY_RE = re.compile(QUANTITY_REGEX)
_NUMBER_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_EXPONENT_RE = re.compile(r"^[eE][-+]?[0-9]+$")

_BINARY: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: dict[str, int] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}
_BINARY_BY_EXP = {v: k for k, v in _BINARY.items()}


def _split(text: str) -> tuple[Decimal, str, str]:
    """Return (number, suffix, format) or raise ValueError."""
    if not isinstance(text, str) or not _QUANTITY_RE.match(text):
        raise ValueError(ERR_FORMAT_WRONG)
    m = _QUANTITY_RE.match(text)
    assert m is not None
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER_RE.match(number):
        raise ValueError(ERR_FORMAT_WRONG)
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the regex above
        raise ValueError(ERR_FORMAT_WRONG) from exc
    if suffix in _BINARY:
        return value, suffix, BINARY_SI
    if suffix in _DECIMAL:
        return value, suffix, DECIMAL_SI
    if _EXPONENT_RE.match(suffix):
        return value, suffix, DECIMAL_EXPONENT
    raise ValueError(ERR_SUFFIX)


def _scale(value: Decimal, suffix: str, fmt: str) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        if fmt == BINARY_SI:
            return value * (Decimal(2) ** _BINARY[suffix])
        if fmt == DECIMAL_SI:
            return value.scaleb(_DECIMAL[suffix])
        return value.scaleb(int(suffix[1:]))


def parse_quantity(text: str) -> Decimal:
    """Parse a quantity string into its exact value; raise ``ValueError`` with Kubernetes' message.

    >>> parse_quantity("100m")
    Decimal('0.100')
    >>> parse_quantity("1Ki")
    Decimal('1024')
    """
    value, suffix, fmt = _split(text)
    return _scale(value, suffix, fmt)


def quantity_format(text: str) -> str:
    """The format (``DecimalSI``, ``BinarySI`` or ``DecimalExponent``) a quantity was written in."""
    return _split(text)[2]


def _int_str(d: Decimal) -> str:
    return format(d.quantize(Decimal(1)), "f")


def _format_decimal(value: Decimal, exponent_style: bool) -> str:
    """Largest power-of-1000 exponent (>= -9) that keeps an integer mantissa; round up below nano."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    with localcontext() as ctx:
        ctx.prec = 80
        nanos = value.scaleb(9)
        if nanos != nanos.to_integral_value():
            nanos = nanos.to_integral_value(rounding=ROUND_CEILING)
        mantissa = nanos
        exp = -9
        if mantissa == 0:
            return "0"
        while exp < 18 and mantissa % 1000 == 0:
            mantissa = mantissa / 1000
            exp += 3
    if exponent_style:
        suffix = f"e{exp}" if exp != 0 else ""
    else:
        suffix = _DECIMAL_BY_EXP[exp]
    return f"{sign}{_int_str(mantissa)}{suffix}"


def format_quantity(value: Decimal | int | str, fmt: str = DECIMAL_SI) -> str:
    """Print a value the way Kubernetes serialises a quantity (its canonical form).

    ``format_quantity(Decimal("0.5")) == "500m"``, ``format_quantity(1536 * 2**20, BINARY_SI) == "1536Mi"``.
    Binary format is used only for whole numbers of at least 1024 in magnitude, as in Kubernetes.
    """
    if isinstance(value, str):
        value = parse_quantity(value)
    value = Decimal(value)
    if fmt == BINARY_SI and value == value.to_integral_value() and abs(value) >= 1024:
        sign = "-" if value < 0 else ""
        n = int(abs(value))
        exp = 0
        while exp < 60 and n % 1024 == 0:
            n //= 1024
            exp += 10
        return f"{sign}{n}{_BINARY_BY_EXP.get(exp, '')}"
    return _format_decimal(value, exponent_style=(fmt == DECIMAL_EXPONENT))


def canonicalize_quantity(text: str) -> str:
    """Re-print a quantity string in canonical form, keeping its format (``"0.5"`` -> ``"500m"``)."""
    value, suffix, fmt = _split(text)
    return format_quantity(_scale(value, suffix, fmt), fmt)


def quantity_to_millis(text: str) -> int:
    """Value in thousandths, rounded up (how Kubernetes reads ``MilliValue()`` of CPU)."""
    return math.ceil(parse_quantity(text) * 1000)


def quantity_to_int(text: str) -> int:
    """Value rounded up to a whole number (``Value()``), e.g. memory bytes."""
    return math.ceil(parse_quantity(text))
