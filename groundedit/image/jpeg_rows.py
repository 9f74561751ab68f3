"""Re-encoding a band of rows of a JPEG without re-encoding the rest.

Our JPEGs (:func:`groundedit.image.codec.encode_jpeg`) carry a restart marker after every MCU row
(16 pixel rows at 4:2:0). Restart markers reset the DC prediction and byte-align the entropy-coded
data, and with standard Huffman tables (``optimize=False``) and box-filter chroma downsampling every
MCU row is encoded from its own 16 pixel rows only. So the JPEG of an image that differs from
another only inside rows ``[y0, y1)`` is the other's JPEG with the MCU rows covering ``[y0, y1)``
swapped for those of an encode of just that band: byte for byte what a full encode gives, at the
cost of encoding the band. Render (the grounded image) and edit (the edited image) change pixels
only inside the target's box or crop window, so each writes its second JPEG this way.
"""

from __future__ import annotations

import math
import re

MCU_ROWS = 16  # pixel rows per MCU at 4:2:0
_RST = re.compile(rb"\xff[\xd0-\xd7]")
_SOI, _EOI, _SOS, _DRI = b"\xff\xd8", b"\xff\xd9", 0xDA, 0xDD
_SOF_BASELINE = 0xC0


class NotSpliceable(ValueError):
    """The JPEG is not laid out as :func:`encode_jpeg` writes it (a full encode is needed)."""


def band_rows(y0: float, y1: float, height: int) -> tuple[int, int]:
    """Pixel rows ``[top, bottom)`` of the whole MCU rows covering rows ``[y0, y1)`` of an image
    ``height`` rows high (``top == bottom`` when the range is empty)."""
    y0, y1 = max(0, math.floor(y0)), min(height, math.ceil(y1))
    if y1 <= y0:
        return 0, 0
    return y0 // MCU_ROWS * MCU_ROWS, min(height, -(-y1 // MCU_ROWS) * MCU_ROWS)


class _Layout:
    """Where a JPEG written by ``encode_jpeg`` keeps its MCU rows: the entropy-coded data runs from
    ``start`` to ``end``, with a restart marker at each of ``markers`` (offsets into the file)."""

    def __init__(self, data: bytes):
        if not data.startswith(_SOI):
            raise NotSpliceable("not a JPEG")
        pos, size, tables, interval, sampling = 2, None, b"", None, None
        while True:
            if pos + 4 > len(data) or data[pos] != 0xFF:
                raise NotSpliceable("bad marker")
            marker = data[pos + 1]
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            body = data[pos + 4 : pos + 2 + length]
            if marker == _SOF_BASELINE:
                size = (int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big"))
                sampling = bytes(body[6 + 3 * i + 1] for i in range(body[5]))
            elif marker in (0xDB, 0xC4):  # DQT, DHT: equal tables code equal blocks equally
                tables += data[pos : pos + 2 + length]
            elif marker == _DRI:
                interval = int.from_bytes(body[0:2], "big")
            elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                raise NotSpliceable("not a baseline JPEG")
            pos += 2 + length
            if marker == _SOS:
                break
        if size is None or sampling != b"\x22\x11\x11":
            raise NotSpliceable("not a 3-component 4:2:0 JPEG")
        if interval != -(-size[0] // MCU_ROWS):
            raise NotSpliceable("no restart marker after every MCU row")
        self.size, self.tables, self.start = size, tables, pos
        self.end = data.rindex(_EOI)
        self.rows = -(-size[1] // MCU_ROWS)
        self._found = _RST.finditer(data, self.start, self.end)
        self._markers: list[int] = []  # offsets of the restart markers read so far (lazily)

    def _marker(self, row: int) -> int:
        """Offset of the restart marker after MCU row ``row``."""
        while len(self._markers) <= row:
            m = next(self._found, None)
            if m is None:
                raise NotSpliceable("fewer restart markers than MCU rows")
            self._markers.append(m.start())
        return self._markers[row]

    def row_start(self, row: int) -> int:
        return self.start if row == 0 else self._marker(row - 1) + 2

    def row_end(self, row: int) -> int:
        return self.end if row == self.rows - 1 else self._marker(row)


def replace_band(base: bytes, band: bytes, top: int) -> bytes:
    """``base`` with its MCU rows from pixel row ``top`` on replaced by all of ``band``'s (both
    written by ``encode_jpeg`` with the same quality; ``band`` as wide as ``base``, ``top`` a
    multiple of 16). Raises :class:`NotSpliceable` when they do not fit together."""
    b, n = _Layout(base), _Layout(band)
    first = top // MCU_ROWS
    last = first + n.rows - 1
    if top % MCU_ROWS or n.size[0] != b.size[0] or n.tables != b.tables or last >= b.rows:
        raise NotSpliceable("the band does not fit the base image")
    if last < b.rows - 1 and n.size[1] % MCU_ROWS:
        raise NotSpliceable("a band above the last MCU row must be whole MCU rows")
    # restart markers count rows modulo 8: renumber the band's for its place in the base
    middle, markers = _RST.subn(
        lambda m: bytes((0xFF, 0xD0 + (m.group()[1] - 0xD0 + first) % 8)), band[n.start : n.end]
    )
    if markers != n.rows - 1:
        raise NotSpliceable("the band's restart markers do not match its MCU rows")
    return base[: b.row_start(first)] + middle + base[b.row_end(last) :]
