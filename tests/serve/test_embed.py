"""``resdense embed`` and ``serve.embed``: pooled or a stage's features of files and folders, .npy + file list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdense.cli import main
from resdense.errors import UserError
from resdense.serve import load_predictor
from resdense.serve.embed import embed_images


def write_folder(root: Path, n: int = 5) -> list[Path]:
    g = torch.Generator().manual_seed(0)
    paths = []
    for k in range(n):
        sub = root / ("a" if k % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        arr = torch.randint(0, 255, (28 + k, 28, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(arr).save(sub / f"{k}.png")
        paths.append(sub / f"{k}.png")
    return sorted(paths)


def test_embed_folder_npy_and_file_list(tmp_path: Path, capsys) -> None:
    paths = write_folder(tmp_path / "imgs")
    out = tmp_path / "feats"
    code = main(
        [
            "embed",
            "--weights",
            "fashion-mnist",
            str(tmp_path / "imgs"),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    feats = np.load(tmp_path / "feats.npy")
    listed = (tmp_path / "feats.txt").read_text().splitlines()
    assert listed == [str(p) for p in paths] and feats.shape == (5, 64) and feats.dtype == np.float32
    # the same rows as the Python call on the decoded images, whatever the batching
    pred = load_predictor("fashion-mnist", weights=True)
    from resdense.data.photo import read_image

    for i, p in enumerate(paths):
        ref = embed_images(pred, read_image(p, 1))
        np.testing.assert_allclose(feats[i], ref[0].numpy(), rtol=1e-4, atol=1e-5)
    # an existing output is refused without --force, in one line, before any work
    capsys.readouterr()
    code = main(["embed", "--weights", "fashion-mnist", str(tmp_path / "imgs"), "--out", str(out) + ".npy"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--force" in err and "feats.npy" in err
    # a stage's features, with --force; an unreadable file is named and left out, the others written
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"not a png")
    code = main(
        [
            "embed",
            "--weights",
            "fashion-mnist",
            str(tmp_path / "imgs"),
            "--out",
            str(out),
            "--force",
            "--layer",
            "layer2",
            "--json",
        ]
    )
    cap = capsys.readouterr()
    assert code == 1 and "broken.png" in cap.err
    assert json.loads(cap.out)["dim"] == 32 and np.load(tmp_path / "feats.npy").shape == (5, 32)
    code = main(
        [
            "embed",
            "--weights",
            "fashion-mnist",
            str(paths[0]),
            "--out",
            str(out),
            "--force",
            "--layer",
            "layer9",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "layer1, layer2, layer3" in err and len(err.strip().splitlines()) == 1


def test_parquet_where_pyarrow_is_installed_else_one_line(tmp_path: Path) -> None:
    from resdense.serve.embed import Embeddings, write_embeddings

    res = Embeddings(np.arange(6, dtype=np.float32).reshape(2, 3), ["a.png", "b.png"], "pooled")
    try:
        import pyarrow.parquet as pq
    except ImportError:  # an optional dependency, not one of resdense's
        with pytest.raises(UserError, match="parquet needs pyarrow"):
            write_embeddings(res, tmp_path / "f.parquet")
        assert not (tmp_path / "f.parquet").exists()
        return
    write_embeddings(res, tmp_path / "f.parquet")
    table = pq.read_table(tmp_path / "f.parquet").to_pydict()
    assert table["path"] == ["a.png", "b.png"] and table["f2"] == [2.0, 5.0]
