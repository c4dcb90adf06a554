"""The site builds in strict mode, and its generated pages follow the code (no hand-kept copy)."""

from __future__ import annotations

import re

from resdense.cli import build_parser
from resdense.models import list_models

from .conftest import ROOT


def test_strict_build_has_every_generated_page(built_site):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name, sub in commands.items():
        page = (built_site / "cli" / f"{name}.html").read_text(encoding="utf-8")
        for action in sub._actions:
            if action.help == "==SUPPRESS==":  # hidden on purpose (as in --help)
                continue
            for option in action.option_strings:  # every declared option is on its command's page
                assert option in page, f"cli/{name}.html lacks {option}"
    registry = (built_site / "models" / "registry.html").read_text(encoding="utf-8")
    for name in list_models():
        assert f"<code>{name}</code>" in registry
    # every RESULTS.md section is on a benchmarks page
    sections = re.findall(r"^## (\d+)\. ", (ROOT / "benchmarks" / "RESULTS.md").read_text(), flags=re.M)
    pages = "".join(p.read_text(encoding="utf-8") for p in (built_site / "benchmarks").glob("*.html"))
    for number in sections:
        assert f"{number}. " in pages


def test_nothing_is_loaded_from_off_the_machine(built_site):
    # no web font, script, style sheet or image from elsewhere (links to elsewhere are fine: they load nothing)
    loads = re.compile(r"<(?:script|img|link|iframe|source)\b[^>]*?(?:src|href)=\"(https?:)?//", re.I)
    for page in built_site.rglob("*.html"):
        assert not loads.search(page.read_text(encoding="utf-8")), page
    css = "".join(p.read_text(encoding="utf-8") for p in built_site.rglob("*.css"))
    assert "fonts.googleapis" not in css and "fonts.gstatic" not in css


def test_a_new_command_gets_its_page_with_no_docs_edit(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    import resdense.cli as cli

    class NewCommand:
        @staticmethod
        def add_parser(sub):
            p = sub.add_parser("frobnicate", help="a command added after the docs were written")
            p.add_argument("--level", type=int, default=3, help="how hard")

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, NewCommand])
    parsers = hooks.commands()
    assert "frobnicate" in parsers
    page = hooks.command_page("frobnicate", parsers["frobnicate"])
    assert "--level" in page and "how hard" in page and "`3`" in page
    assert "resdense frobnicate --help" in page  # the example that runs as written


def test_readme_is_short_its_commands_parse_and_its_links_resolve():
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    parser = build_parser()
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.M | re.S)
    lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines() if ln.startswith("resdense ")]
    assert lines
    for line in lines:  # every option and choice as the parser declares it (tests/cli run the commands)
        parser.parse_args(shlex.split(line, comments=True)[1:])
    assert "bash scripts/setup.sh && bash scripts/check.sh" in readme  # what .ci/run runs
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_every_public_function_and_class_has_a_reference_entry(built_site):
    import importlib
    import inspect

    html = "".join(p.read_text(encoding="utf-8") for p in (built_site / "api").glob("*.html"))
    ids = set(re.findall(r'id="(resdense[^"]*)"', html))
    missing = []
    for ns in ("resdense", "resdense.models", "resdense.train", "resdense.serve", "resdense.studies"):
        module = importlib.import_module(ns)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            # under the namespace's name, or under the module that defines it (resdense.explain, the studies)
            if f"{ns}.{name}" not in ids and f"{obj.__module__}.{obj.__name__}" not in ids:
                missing.append(f"{ns}.{name}")
    assert not missing, f"no API reference entry for {missing}"
