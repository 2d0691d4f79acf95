"""consim.address: the one host:port parser, with Go's error texts."""

from __future__ import annotations

import pytest

from consim.address import AddressError, parse_address, valid_address


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.2:8300", ("127.0.0.2", 8300)),
        ("10.1.2.3:0", ("10.1.2.3", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:08301", ("127.0.0.1", 8301)),  # ParseUint allows leading zeros
        ("[::1]:8301", ("::1", 8301)),
    ],
)
def test_valid(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed
    assert valid_address(address)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.20.9:notaport", 'strconv.ParseUint: parsing "notaport": invalid syntax'),
        ("127.0.20.9:99999", 'strconv.ParseUint: parsing "99999": value out of range'),
        ("127.0.20.9:-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        ("127.0.20.9:+80", 'strconv.ParseUint: parsing "+80": invalid syntax'),
        ("127.0.20.9:٣", 'strconv.ParseUint: parsing "٣": invalid syntax'),  # not ASCII
        ("127.0.20.9:", 'strconv.ParseUint: parsing "": invalid syntax'),
        (":8301", "lookup : no such host"),
        ("", "address : missing port in address"),
        ("127.0.20.9", "address 127.0.20.9: missing port in address"),
        ("::1:8301", "address ::1:8301: too many colons in address"),
        ("[::1]", "address [::1]: missing port in address"),
        ("[::1:8301", "address [::1:8301: missing ']' in address"),
        ("consul.service:8301", "lookup consul.service: no such host"),  # no DNS in consim
        ("999.0.0.1:8301", "lookup 999.0.0.1: no such host"),
    ],
)
def test_invalid_with_gos_reason(address: str, reason: str) -> None:
    with pytest.raises(AddressError) as err:
        parse_address(address)
    assert str(err.value) == reason
    assert not valid_address(address)


@pytest.mark.parametrize("value", [None, 8301, b"127.0.0.1:1", ["127.0.0.1:1"], {"a": 1}])
def test_non_strings_are_invalid(value: object) -> None:
    assert not valid_address(value)
    with pytest.raises(AddressError):
        parse_address(value)  # type: ignore[arg-type]
