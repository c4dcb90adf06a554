"""mypy over the public API (pyproject's [tool.mypy]: the five namespaces' __init__ and a user's program that
calls every export), so the reference's signatures and a user's editor agree with the code."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT


def test_public_api_type_checks(tmp_path):
    env = dict(os.environ, MYPYPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_ships_its_annotations():
    assert (ROOT / "src" / "resdense" / "py.typed").is_file()
    assert '"resdense" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_every_public_signature_is_annotated():
    # an unannotated parameter is Any to a user's editor and to mypy: the reference would show no type
    import inspect

    from .test_docstrings import public_objects

    bare = []
    for name, obj in public_objects():
        target = obj.__dict__.get("__init__") if inspect.isclass(obj) else obj
        if target is None or getattr(obj, "__dataclass_fields__", None):
            continue
        sig = inspect.signature(target)
        for p in sig.parameters.values():
            named = p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            if named and p.annotation is inspect.Parameter.empty:
                bare.append(f"{name}({p.name})")
        if inspect.isfunction(obj) and sig.return_annotation is inspect.Signature.empty:
            bare.append(f"{name} -> ?")
    assert not bare, f"unannotated: {bare}"
