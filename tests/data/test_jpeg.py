"""data/jpeg.py: the JPEG facts the fast photo path reads without Pillow agree with Pillow's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from resdense.data.jpeg import plain_jpeg_header
from resdense.data.photo import PhotoTransform

from .test_stream import _smooth


def _exif_block(orientation: int, order: str = "II", kind: int = 3) -> bytes:
    """A minimal Exif APP1 body written by hand: IFD0 with one orientation entry."""
    end = "little" if order == "II" else "big"
    entry = (0x0112).to_bytes(2, end) + kind.to_bytes(2, end) + (1).to_bytes(4, end)
    entry += orientation.to_bytes(2 if kind == 3 else 4, end).ljust(4, b"\x00")
    tiff = order.encode() + (42).to_bytes(2, end) + (8).to_bytes(4, end) + (1).to_bytes(2, end) + entry
    return b"Exif\x00\x00" + tiff + (0).to_bytes(4, end)


def test_the_fast_header_reads_what_pillow_reads(tmp_path: Path) -> None:
    """The fast path's own header reader gives Pillow's size and orientation, or steps aside (None)."""
    img = Image.fromarray(_smooth(30, 40))
    cases = {"none.jpg": {}, "prog.jpg": {"progressive": True}, "grey.jpg": {}}
    for o in range(1, 9):
        for order in ("II", "MM"):
            cases[f"{o}{order}.jpg"] = {"exif": _exif_block(o, order)}
    cases["long.jpg"] = {"exif": _exif_block(6, kind=4)}  # not a SHORT: Pillow decides
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    cases["xmp.jpg"] = {"xmp": xmp}  # the orientation only in XMP: Pillow decides
    for name, kw in cases.items():
        (img.convert("L") if name == "grey.jpg" else img).save(tmp_path / name, quality=90, **kw)
    Image.new("CMYK", (40, 30)).save(tmp_path / "cmyk.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00")
    seen = {}
    for f in sorted(tmp_path.glob("*.jpg")):
        got = plain_jpeg_header(f.read_bytes())
        seen[f.name] = got
        if got is not None:
            with Image.open(f) as im:
                assert got == (*im.size, im.getexif().get(0x0112, 1)), f.name
    assert {k for k, v in seen.items() if v is None} == {"long.jpg", "xmp.jpg", "cmyk.jpg", "junk.jpg"}
    assert seen["6MM.jpg"] == (40, 30, 6) and seen["none.jpg"] == (40, 30, 1)
    # where it steps aside, the picture still comes upright, through Pillow
    t = PhotoTransform(16, 3, crop="centre")
    assert t(tmp_path / "xmp.jpg").shape == (16, 16, 3)
    assert np.abs(t(tmp_path / "xmp.jpg").astype(int) - t(tmp_path / "6II.jpg").astype(int)).mean() < 2.5
