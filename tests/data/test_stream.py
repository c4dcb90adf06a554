"""Streamed image folders: the header scan, the photo transforms, and each rank's share of every epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from resdense.data.folder import bad_images_error, index_folder, load_image_folder, scan_images
from resdense.data.photo import PhotoTransform
from resdense.data.stream import FolderStream, StreamedFolder, load_folder
from resdense.errors import DataError

from .conftest import assert_one_line

_rng = np.random.default_rng(0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    return _rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def photo_folder(root: Path, n_per_class: int = 6, size: tuple[int, int] = (40, 30)) -> Path:
    """train/ and test/ with classes a, b, c of random colour JPEG and PNG files, each one different."""
    for split, n in (("train", n_per_class), ("test", 2)):
        for c in "abc":
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ext = ".jpg" if i % 2 else ".png"
                Image.fromarray(noise(size[1], size[0])).save(root / split / c / f"{i}{ext}")
    return root


# -- the photo transforms -------------------------------------------------------------------------------


def test_the_photo_crop_is_the_batched_sampler_drawing_one_box(tmp_path: Path) -> None:
    """One random-resized-crop sampler serves both paths: a streamed photo's window is the box the batched
    sampler draws for one image from the same generator state."""
    from resdense.data.augment import random_resized_crop_params

    t = PhotoTransform(32, 3, crop="random")
    for seed in range(20):
        left, top, w, h = t._window(500, 375, torch.Generator().manual_seed(seed))
        box = random_resized_crop_params(1, 375, 500, generator=torch.Generator().manual_seed(seed))[0]
        assert [top, left, h, w] == box.tolist()
        assert left >= 0 and left + w <= 500 and top >= 0 and top + h <= 375 and w > 0 and h > 0


def test_centre_crop_is_resize_shorter_side_then_centre(tmp_path: Path) -> None:
    y, x = np.mgrid[0:150, 0:200]
    img = Image.fromarray(np.stack([x, y, (x * y) // 120], -1).astype(np.uint8))  # smooth: resamples agree
    img.save(tmp_path / "x.png")
    got = PhotoTransform(56, 3, crop="centre")(tmp_path / "x.png")
    # reference: shorter side to 56 / 0.875 = 64, then the centre 56 x 56 (the ImageNet evaluation)
    ref = img.resize((round(200 * 64 / 150), 64), Image.Resampling.BILINEAR)
    left = (ref.size[0] - 56) // 2
    ref = np.asarray(ref.crop((left, 4, left + 56, 60)))
    assert got.shape == (56, 56, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 1.5  # one resample vs two: close, not equal
    assert np.abs(got.astype(int) - np.asarray(img.resize((56, 56))).astype(int)).mean() > 10  # not a squash


def test_squash_matches_the_in_memory_decode(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r")
    ds = load_image_folder(root, image_size=24)
    t = PhotoTransform(24, 3, crop="squash")
    for (path, _), img in zip(index_folder(root).train, ds.train.images):
        assert torch.equal(torch.from_numpy(t(path).copy()).permute(2, 0, 1), img)


def test_large_jpeg_decodes_at_a_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a smooth picture (JPEG keeps it well), 8x the target
    y, x = np.mgrid[0:512, 0:512]
    arr = np.stack([x // 2, y // 2, (x + y) // 4], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    requested = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        requested.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = PhotoTransform(64, 3, crop="squash")(tmp_path / "big.jpg")
    assert requested == [(64, 64)]  # decoded at 1/8 scale straight from the DCT
    full = np.asarray(
        Image.open(tmp_path / "big.jpg").convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    )
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 3
    # a target close to the file's size: no reduced decode
    requested.clear()
    PhotoTransform(300, 3, crop="squash")(tmp_path / "big.jpg")
    assert requested == []


def _smooth(h: int, w: int) -> np.ndarray:
    """A smooth, asymmetric picture: JPEG keeps it well, so the two decoders may only differ by rounding."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + 2 * y) * 255 // (w + 2 * h)], -1).astype(np.uint8)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("crop", ["random", "centre"])
@pytest.mark.parametrize("channels", [3, 1])
def test_fast_jpeg_path_matches_pillow(tmp_path, monkeypatch, orientation, crop, channels) -> None:
    """Plain JPEGs take the libjpeg-turbo + torch resize path; it gives Pillow's picture, EXIF turns,
    grey output, reduced-scale decodes and the seeded crop and flip included."""
    from resdense.data import photo as transforms

    calls = []
    real = transforms._simplejpeg.decode_jpeg
    monkeypatch.setattr(
        transforms._simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(k) or real(*a, **k)
    )
    for name, (h, w) in {"small": (90, 120), "big": (600, 800)}.items():
        img = Image.fromarray(_smooth(h, w))
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(tmp_path / f"{name}.jpg", quality=95, exif=exif.tobytes())
        t = PhotoTransform(32, channels, crop=crop, flip=True)
        calls.clear()
        fast = [t(tmp_path / f"{name}.jpg", _gen(s)) for s in range(4)]
        assert len(calls) == 4
        with monkeypatch.context() as m:
            m.setattr(transforms, "_simplejpeg", None)
            slow = [t(tmp_path / f"{name}.jpg", _gen(s)) for s in range(4)]
        for a, b in zip(fast, slow):
            assert a.shape == b.shape == (32, 32, channels) and a.dtype == np.uint8
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.5, (name, crop)
    assert calls[0]["min_factor"] > 1 or crop == "random"  # the big file's centre crop: a reduced decode


def test_a_jpeg_the_fast_decoder_refuses_goes_through_pillow(tmp_path, monkeypatch) -> None:
    """libjpeg-turbo's strict mode refuses some files Pillow reads (extraneous bytes, say): same picture."""
    from resdense.data import photo as transforms

    Image.fromarray(_smooth(90, 120)).save(tmp_path / "x.jpg", quality=95)
    t = PhotoTransform(32, 3, crop="random", flip=True)
    with monkeypatch.context() as m:
        m.setattr(transforms, "_simplejpeg", None)
        want = t(tmp_path / "x.jpg", _gen(3))

    def refuse(*a, **k):
        raise ValueError("Corrupt JPEG data: 12 extraneous bytes before marker 0xd9")

    monkeypatch.setattr(transforms._simplejpeg, "decode_jpeg", refuse)
    assert np.array_equal(t(tmp_path / "x.jpg", _gen(3)), want)


def test_random_crop_and_flip_repeat_with_the_seed(tmp_path: Path) -> None:
    Image.fromarray(noise(60, 80)).save(tmp_path / "x.png")
    t = PhotoTransform(32, 3, crop="random", flip=True)
    a = [t(tmp_path / "x.png", _gen(s)) for s in range(6)]
    b = [t(tmp_path / "x.png", _gen(s)) for s in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.tobytes() for x in a}) == 6  # different seeds, different crops
    assert all(x.shape == (32, 32, 3) for x in a)


def test_odd_files_work_as_in_memory(tmp_path: Path) -> None:
    """Symlinks, upper-case extensions, grey, palette, CMYK, 16-bit and EXIF-rotated images."""
    root = tmp_path / "r"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    Image.fromarray(noise(20, 30)).save(root / "a" / "rgb.PNG")
    Image.fromarray(noise(20, 30, 1)).save(root / "a" / "grey.JPG")
    Image.fromarray(noise(20, 30)).convert("P").save(root / "a" / "palette.gif")
    Image.fromarray(noise(20, 30)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    Image.fromarray(noise(20, 30, 1).astype(np.uint16) * 257).save(root / "b" / "deep.png")
    rotated = Image.fromarray(noise(30, 20))  # stored 20 wide, 30 high, shown rotated by 90 degrees
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "b" / "rotated.jpg", exif=exif.tobytes())
    (root / "b" / "link.png").symlink_to(root / "a" / "rgb.PNG")
    index = index_folder(root, test_fraction=0.0)
    assert len(index.train) == 7
    scan = scan_images([p for p, _ in index.train])
    assert scan.bad == [] and not scan.grey and scan.first_size == (20, 30)
    assert scan_images([root / "b" / "rotated.jpg"]).first_size == (20, 30)  # upright
    ds = load_image_folder(root, image_size=16, test_fraction=0.0)
    t = PhotoTransform(16, 3, crop="squash")
    for (path, _), img in zip(index.train, ds.train.images):
        got = torch.from_numpy(t(path).copy()).permute(2, 0, 1)
        assert torch.equal(got, img), path.name


# -- the scan ------------------------------------------------------------------------------------------


def bad_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A folder with one bad file of each kind (the pixel limit lowered so a bomb is small)."""
    photo_folder(root)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    bad = {
        "empty file": root / "train" / "a" / "empty.png",
        "not an image": root / "train" / "b" / "notes.jpg",
        "decompression bomb": root / "train" / "c" / "bomb.png",
        "warning-size bomb": root / "test" / "a" / "bomb2.png",
        "truncated": root / "test" / "b" / "cut.jpg",
    }
    bad["empty file"].write_bytes(b"")
    bad["not an image"].write_text("these are not pixels")
    Image.fromarray(noise(100, 100)).save(bad["decompression bomb"])  # over 2x the limit: Pillow raises
    Image.fromarray(noise(50, 50)).save(bad["warning-size bomb"])  # 1x-2x: Pillow only warns
    Image.fromarray(noise(30, 40)).save(root / "x.jpg")
    data = (root / "x.jpg").read_bytes()
    (root / "x.jpg").unlink()
    bad["truncated"].write_bytes(data[: len(data) // 2])
    return bad


def test_scan_finds_every_kind_of_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = bad_folder(tmp_path / "r", monkeypatch)
    index = index_folder(tmp_path / "r")
    scan = scan_images([p for p, _ in index.train + index.test])
    found = {b.path: b.kind for b in scan.bad}
    assert found == {
        bad["empty file"]: "empty file",
        bad["not an image"]: "not an image",
        bad["decompression bomb"]: "decompression bomb",
        bad["warning-size bomb"]: "decompression bomb",
        bad["truncated"]: "truncated",
    }
    msg = assert_one_line(
        bad_images_error(index.root, scan.bad),
        "5 bad image files",
        "1 empty file",
        "1 not an image",
        "2 decompression bomb",
        "1 truncated",
        "--skip-bad-images",
        str(scan.bad[0].path),
        "and 2 more",
    )
    assert msg.startswith(str(index.root))
    with pytest.raises(DataError, match="5 bad image files"):
        load_folder(tmp_path / "r")
    data, left_out = load_folder(tmp_path / "r", skip_bad_images=True, in_memory="no")
    assert {b.path for b in left_out} == set(bad.values())
    assert isinstance(data, StreamedFolder)
    assert not {p for p, _ in data.index.train + data.index.test} & set(bad.values())
    # skipped in memory too
    data, _ = load_folder(tmp_path / "r", skip_bad_images=True, in_memory="yes")
    assert len(data.train) == 3 * 6 and len(data.test) == 3 * 2  # the good files, all of them


def test_auto_streams_what_does_not_fit(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r")  # 24 images of 3 x 30 x 40 = 86,400 bytes decoded
    assert not isinstance(load_folder(root, budget_bytes=86_400)[0], StreamedFolder)
    assert isinstance(load_folder(root, budget_bytes=86_399)[0], StreamedFolder)
    assert isinstance(load_folder(root, augment="rrc-flip")[0], StreamedFolder)  # crops need the files
    # asked for, the crops are taken from the stored images instead (batched, see random_resized_crop)
    assert not isinstance(load_folder(root, augment="rrc-flip", in_memory="yes")[0], StreamedFolder)
    # the budget counts the images at the size they will be stored at
    assert not isinstance(load_folder(root, budget_bytes=24 * 3 * 10 * 10, image_size=10)[0], StreamedFolder)
    assert isinstance(load_folder(root, budget_bytes=24 * 3 * 10 * 10 - 1, image_size=10)[0], StreamedFolder)


# -- each rank's share ---------------------------------------------------------------------------------


def stream_of(root: Path, workers: int = 0) -> FolderStream:
    data, _ = load_folder(root, in_memory="no")
    return data.streams(size=8, augment="none", workers=workers)[0]


def fingerprints(x: torch.Tensor) -> list[bytes]:
    return [row.contiguous().numpy().tobytes() for row in x]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_disjoint_shares_of_every_global_batch(tmp_path: Path, world: int) -> None:
    root = photo_folder(tmp_path / "r", n_per_class=10)  # 30 distinct training images
    stream = stream_of(root)
    batch = 6
    for epoch in (0, 1):
        whole = [fingerprints(x) for x, _ in stream.train_batches(batch, seed=1, epoch=epoch)]
        shards = [
            [
                fingerprints(x)
                for x, _ in stream.train_batches(batch, seed=1, epoch=epoch, rank=r, world_size=world)
            ]
            for r in range(world)
        ]
        for i, global_batch in enumerate(whole):
            parts = [s[i] for s in shards]
            joined = [f for p in parts for f in p]
            assert len(set(joined)) == batch and sorted(joined) == sorted(global_batch)
        seen = [f for s in shards for b in s for f in b]
        assert len(seen) == len(set(seen)) == 30  # every image once per epoch
    first = [f for x, _ in stream.train_batches(batch, seed=1, epoch=0) for f in fingerprints(x)]
    second = [f for x, _ in stream.train_batches(batch, seed=1, epoch=1) for f in fingerprints(x)]
    assert first != second and sorted(first) == sorted(second)


def test_batches_at_given_indices_are_the_evaluation_images_in_memory_and_streamed(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r")
    memory = load_folder(root, in_memory="yes", image_size=8)[0].train
    picks = torch.tensor([0, 7, 17])
    for split in (stream_of(root), memory):
        whole = torch.cat([x for x, _ in split.eval_batches(5)])
        (x, y), (x2, _) = split.batches_at([picks, slice(2, 4)])
        assert torch.equal(x, whole[picks]) and torch.equal(y, split.labels[picks])
        assert torch.equal(x2, whole[2:4])


def test_worker_processes_give_the_same_batches(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r")
    data, _ = load_folder(root, in_memory="no")
    inline, workers = (data.streams(size=12, augment="rrc-flip", workers=w)[0] for w in (0, 2))
    a = list(inline.train_batches(4, seed=2, epoch=3, rank=1, world_size=2))
    b = list(workers.train_batches(4, seed=2, epoch=3, rank=1, world_size=2))
    assert len(a) == len(b) == 18 // 4
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == torch.uint8 and xa.shape == (2, 3, 12, 12)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


class _WhoDecodes:
    """A stand-in transform whose pixels are the decoding process's id."""

    channels, size = 1, 2

    def __call__(self, path, rng=None) -> np.ndarray:
        import os

        return np.frombuffer(os.getpid().to_bytes(4, "little"), dtype=np.uint8).reshape(2, 2, 1)


def test_the_decoding_workers_outlive_the_epoch(tmp_path: Path) -> None:
    """The same worker processes decode every epoch and evaluation (a fresh fork each time costs the
    training process copy-on-write faults); and each epoch still gets its own batches."""
    import os

    root = photo_folder(tmp_path / "r")
    data, _ = load_folder(root, in_memory="no")
    stream = FolderStream(data.index.train, _WhoDecodes(), workers=2)

    def deciders(batches) -> set[int]:
        return {
            int.from_bytes(x[i].flatten().numpy().tobytes(), "little")
            for x, _ in batches
            for i in range(len(x))
        }

    first = list(stream.train_batches(3, seed=0, epoch=0))
    second = list(stream.train_batches(3, seed=0, epoch=1))
    pids = deciders(first)
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert deciders(second) == pids == deciders(stream.eval_batches(4))
    assert [y.tolist() for _, y in first] != [y.tolist() for _, y in second]  # a new order each epoch
    # one iteration at a time: a suspended one that is resumed after another started says so
    old = stream.train_batches(3, seed=0, epoch=2)
    next(old)
    assert len(list(stream.train_batches(3, seed=0, epoch=3))) == 18 // 3
    with pytest.raises(RuntimeError, match="one iteration at a time"):
        next(old)


def test_damaged_pixels_are_a_one_line_error(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r")
    victim = root / "train" / "b" / "2.png"
    data = victim.read_bytes()
    # keep the header and the end marker, garble the compressed pixels: the scan cannot see it
    victim.write_bytes(data[:60] + bytes(len(data) - 80) + data[-20:])
    stream = stream_of(root, workers=1)
    with pytest.raises(DataError) as e:
        list(stream.train_batches(4, seed=0, epoch=0))
    assert_one_line(e.value, str(victim))
