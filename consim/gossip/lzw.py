"""LZW as Go's ``compress/lzw`` writes it with LSB order and 8-bit literals (memberlist's compress).

Variable-width codes from 9 to 12 bits, code 256 clears the table, 257 ends the stream, the
writer starts with a clear code and clears again when the table is full. Written from the
format (GIF-style LZW), not from Go's source; checked against Go's output from real serf agents.
"""

from __future__ import annotations

CLEAR = 256
EOF = 257
MAX_WIDTH = 12
MAX_CODE = (1 << MAX_WIDTH) - 1


class LZWError(ValueError):
    pass


def decompress(data: bytes, limit: int = 1 << 24) -> bytes:
    """Decode a whole stream; LZWError on a bad code, a missing EOF or output beyond ``limit``."""
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    table.extend(b"" for _ in range(MAX_CODE + 1 - len(table)))
    out = bytearray()
    width, hi, overflow = 9, EOF, 512
    last = -1
    bits = nbits = 0
    pos, n = 0, len(data)
    while True:
        while nbits < width:
            if pos >= n:
                raise LZWError("unexpected EOF")
            bits |= data[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code < CLEAR:
            entry = table[code]
        elif code == CLEAR:
            width, hi, overflow, last = 9, EOF, 512, -1
            continue
        elif code == EOF:
            return bytes(out)
        elif code < hi:
            entry = table[code]
        elif code == hi and last >= 0:
            entry = table[last] + table[last][:1]  # the code being defined right now (KwKwK)
        else:
            raise LZWError(f"invalid code {code}")
        if last >= 0:
            table[hi] = table[last] + entry[:1]
        out += entry
        if len(out) > limit:
            raise LZWError("output too large")
        last, hi = code, hi + 1
        if hi >= overflow:
            if width == MAX_WIDTH:
                last, hi = -1, hi - 1
            else:
                width, overflow = width + 1, overflow << 1


def compress(data: bytes) -> bytes:
    """Encode as Go's writer does (clear code first, clear when codes run out, then EOF)."""
    out = bytearray()
    bits = nbits = 0
    # ``limit``: the next code at which something happens: one bit wider (512, 1024, 2048) or,
    # at MAX_CODE, a clear code and a fresh start.
    width, hi, limit = 9, EOF, 512

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    def at_limit() -> bool:
        """Go's incHi past its plain increment: True when the codes ran out (the caller empties
        its table)."""
        nonlocal width, hi, limit
        if hi == MAX_CODE:
            emit(CLEAR)
            width, hi, limit = 9, EOF, 512
            return True
        width, limit = width + 1, min(limit << 1, MAX_CODE)
        return False

    table: dict[int, int] = {}
    emit(CLEAR)
    if data:
        code = data[0]
        for x in data[1:]:
            key = (code << 8) | x
            hit = table.get(key)
            if hit is not None:
                code = hit
                continue
            emit(code)
            code = x
            hi += 1
            if hi == limit and at_limit():
                table.clear()
                continue
            table[key] = hi
        emit(code)
        hi += 1
        if hi == limit:
            at_limit()
    emit(EOF)
    if nbits > 0:
        out.append(bits & 0xFF)
    return bytes(out)
