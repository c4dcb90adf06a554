"""Every public function and class of the five public namespaces has a docstring that names each of its
parameters (the API reference is generated from them: an undocumented argument is a hole in the reference)."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

NAMESPACES = ["resdense", "resdense.models", "resdense.train", "resdense.serve", "resdense.studies"]


def public_objects():
    for ns in NAMESPACES:
        module = importlib.import_module(ns)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{ns}.{name}", obj


def documented_parameters(obj) -> list[str]:
    """The parameters a reader must be told about: a function's, or a class's constructor's."""
    target = obj
    if inspect.isclass(obj):
        init = obj.__dict__.get("__init__") or next(
            (c.__dict__["__init__"] for c in obj.__mro__[1:] if "__init__" in c.__dict__), None
        )
        # a dataclass or a class whose constructor is inherited from torch/object: its fields are
        # documented as attributes, not as constructor arguments
        if (
            init is None
            or not getattr(init, "__module__", "").startswith("resdense")
            or hasattr(obj, "__dataclass_fields__")
        ):
            return []
        target = init
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


@pytest.mark.parametrize(
    ("name", "obj"), list(public_objects()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_public_object_documents_its_parameters(name, obj):
    doc = inspect.getdoc(obj) or ""
    # a dataclass without a docstring gets its signature as one: that documents nothing
    assert doc.strip() and not doc.startswith(f"{obj.__name__}("), f"{name} has no docstring"
    if inspect.isclass(obj) and obj.__dict__.get("__init__") is not None:
        doc += "\n" + (inspect.getdoc(obj.__init__) or "")
    missing = [p for p in documented_parameters(obj) if not re.search(rf"\b{re.escape(p)}\b", doc)]
    assert not missing, f"{name}: its docstring does not name the parameter(s) {missing}"
