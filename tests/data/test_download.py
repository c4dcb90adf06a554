"""download(): against a local HTTP server, success, progress output and one-line failures."""

from __future__ import annotations

import http.server
import io
import sys
from pathlib import Path

import pytest

from resdense.data.download import download, format_progress
from resdense.errors import DataError

from .conftest import assert_one_line, serve


def test_download_writes_file_and_is_quiet_without_progress(
    http_dir: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, url = http_dir
    payload = bytes(range(256)) * 1000
    (folder / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    assert download(url + "blob.bin", dest, progress=False) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # the temp file was renamed
    assert capsys.readouterr().err == ""


def test_progress_is_one_line_when_not_a_terminal(
    http_dir: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, url = http_dir
    (folder / "a.gz").write_bytes(b"x" * 1000)
    download(url + "a.gz", tmp_path / "a.gz", desc="fashion-mnist: a.gz")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fashion-mnist: a.gz" in err and url + "a.gz" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(
    http_dir: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = http_dir
    (folder / "big").write_bytes(b"y" * 300_000)
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    download(url + "big", tmp_path / "big", desc="fashion-mnist: big")
    out = tty.getvalue()
    assert out.startswith("\r") and out.endswith("\n")
    assert "fashion-mnist: big 0.3/0.3 MB" in out


def test_format_progress() -> None:
    assert format_progress("f: x.gz", 12_345_678, 26_421_856) == "f: x.gz 12.3/26.4 MB"
    assert format_progress("f", 1_500_000, None) == "f 1.5 MB"


def test_404_is_one_line_error_and_writes_nothing(http_dir: tuple[Path, str], tmp_path: Path) -> None:
    _, url = http_dir
    dest = tmp_path / "dl" / "missing.gz"
    with pytest.raises(DataError) as e:
        download(url + "missing.gz", dest, progress=False)
    assert_one_line(e.value, url + "missing.gz", "HTTP 404")
    assert not dest.parent.exists() or not any(dest.parent.iterdir())


def test_connection_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        download("http://127.0.0.1:9/x.gz", tmp_path / "x.gz", progress=False)
    assert_one_line(e.value, "http://127.0.0.1:9/x.gz", "cannot download")
    assert not (tmp_path / "x.gz").exists()


def test_bad_url(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        download("not a url", tmp_path / "x", progress=False)
    assert_one_line(e.value, "not a url")


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes, sends 100 and hangs up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"z" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format, *args):
        pass


def test_connection_closed_early_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "short.gz"
    with serve(tmp_path, _ShortHandler) as url, pytest.raises(DataError) as e:
        download(url + "short.gz", dest, progress=False)
    assert_one_line(e.value, url + "short.gz")
    assert not dest.parent.exists() or not any(dest.parent.iterdir())
