"""What a JPEG's markers say, read straight from its bytes: size, colour space and EXIF orientation.

The streamed photo path (``photo.PhotoTransform``) decodes plain JPEGs through libjpeg-turbo and needs
only these facts first; opening each file through Pillow to learn them cost about a twentieth of the
per-file work. Anything unexpected gives None, and the caller lets Pillow read the file as before.
"""

from __future__ import annotations

from PIL import Image

try:  # libjpeg-turbo; optional (installed with resdense): photo.py decodes with it too
    import simplejpeg
except ImportError:  # pragma: no cover - installed with resdense
    simplejpeg = None


def plain_jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a JPEG the fast path can take: 8-bit grey or colour, within
    Pillow's pixel limit. None for anything else, or anything unexpected."""
    if simplejpeg is None or data[:2] != b"\xff\xd8":
        return None
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if colorspace not in ("Gray", "YCbCr", "RGB") or (limit and w * h > limit):
        return None
    orientation = exif_orientation(data)
    return None if orientation is None else (w, h, orientation)


def exif_orientation(data: bytes) -> int | None:
    """The orientation tag (0x0112) of a JPEG's first Exif segment, 1 without one, as Pillow's ``getexif``
    reads it; None where the markers or the TIFF block are not as expected, and where the tag is missing
    but an XMP block could carry it (Pillow then reads it from there)."""
    pos, n = 2, len(data)
    exif, xmp = None, False
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: every APPn segment comes before
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1:
            body = data[pos + 4 : pos + 2 + length]
            if exif is None and body[:6] == b"Exif\x00\x00":
                exif = body[6:]
            xmp = xmp or body.startswith(b"http://ns.adobe.com/xap/1.0/")
        pos += 2 + length
    else:
        return None  # no start of scan: Pillow's to judge
    found = _tiff_orientation(exif) if exif is not None else 0
    if found == 0:  # no tag
        return None if xmp else 1
    return found


def _tiff_orientation(tiff: bytes) -> int | None:
    """IFD0's orientation as a single SHORT; 0 without the tag; None for anything unexpected."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None

    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at : at + size], order)

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return None
    for k in range(num(ifd, 2)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            return None
        if num(at, 2) == 0x0112:
            kind, count = num(at + 2, 2), num(at + 4, 4)
            return num(at + 8, 2) if kind == 3 and count == 1 else None
    return 0
