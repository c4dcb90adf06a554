"""MkDocs build hooks: the pages that are views of the code, generated at build time (never hand-kept copies).

- How-to guides, one page per command: every sub-command of ``resdense.cli.build_parser()`` and its
  options as argparse declares them (a command another branch adds appears with no docs edit).
- Models: the registry's table (names, parameters, MACs at the default input size, weights and their
  stated accuracy).
- Benchmarks: ``benchmarks/RESULTS.md`` (which stays where it is, the one owner of its figures) split by
  topic, newest section first.

``mkdocs.yml`` names this file under ``hooks:``; the docs tests import the same functions.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:  # the package as checked out, also where it is not installed
    sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
RUN_MARK = (
    "<!-- docs-test: run -->"  # the line before a fenced block the docs test runs (docs/contributing.md)
)

# One runnable example per command, at toy size. A command with none here gets ``resdense CMD --help``.
EXAMPLES = {
    "list": "resdense list",
    "inspect": "resdense inspect d2l_resnet18 --input-size 1 96 96",
    "train": "resdense train --train-subset 256 --test-subset 256 --epochs 1 --out runs/tiny",
    "evaluate": "resdense evaluate --weights fashion-mnist --test-subset 256",
    "predict": (
        "python -c \"from PIL import Image; Image.new('L', (28, 28), 30).save('shoe.png')\"\n"
        "resdense predict --weights fashion-mnist shoe.png --top 3"
    ),
    "compare": (
        "resdense train --train-subset 256 --test-subset 256 --epochs 1 --out runs/a\n"
        "resdense train --train-subset 256 --test-subset 256 --epochs 1 --lr 0.05 --out runs/b\n"
        "resdense compare runs/a runs/b --plot compare.png"
    ),
    "export": "resdense export --weights fashion-mnist --format torchscript --out fmnist.pt",
    "explain": (
        "python -c \"from PIL import Image; Image.new('L', (28, 28), 30).save('shoe.png')\"\n"
        "resdense explain --weights fashion-mnist shoe.png --out cam"
    ),
    "embed": (
        "python -c \"from PIL import Image; Image.new('L', (28, 28), 30).save('shoe.png')\"\n"
        "resdense embed --weights fashion-mnist shoe.png --out feats"
    ),
}


# ---------------------------------------------------------------- the commands


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser, in ``resdense --help``'s order (its one-line help as its description)."""
    from resdense.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, parser in action.choices.items():
                parser.description = parser.description or helps.get(name) or ""
            return dict(action.choices.items())
    return {}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    if action.nargs == 0 or isinstance(action, argparse._HelpAction):
        value = ""
    else:
        metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        value = f"`{metavar}`" + (f" ({action.nargs})" if action.nargs in ("*", "+", "?") else "")
    choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
    default = action.default
    shown = "" if default in (None, argparse.SUPPRESS, False) or action.nargs == 0 else f"`{default}`"
    help_text = (action.help or "").replace("%(default)s", str(default)).replace("%%", "%")
    return f"| {names} | {value} | {_cell(help_text)} | {choices} | {shown} |"


def command_page(name: str, parser: argparse.ArgumentParser) -> str:
    """The how-to page of ``resdense NAME``: what it does, an example that runs, every option."""
    example = EXAMPLES.get(name, f"resdense {name} --help")
    lines = [f"# resdense {name}", "", _cell(parser.description or ""), ""]
    lines += ["## Example", "", RUN_MARK, "```bash", example, "```", ""]
    lines += ["## Usage", "", "```text", parser.format_usage().strip(), "```", ""]
    lines += ["## Options", "", "Generated from the command's declarations (`resdense.cli`).", ""]
    lines += ["| option | value | what | choices | default |", "|---|---|---|---|---|"]
    lines += [_option_row(a) for a in parser._actions if a.help != argparse.SUPPRESS]
    return "\n".join(lines) + "\n"


def command_index(parsers: dict[str, argparse.ArgumentParser]) -> str:
    lines = [
        "# How-to guides: the commands",
        "",
        "One page per command of `resdense`, generated from its parser.",
        "",
    ]
    lines += ["| command | what |", "|---|---|"]
    lines += [f"| [`resdense {n}`]({n}.md) | {_cell(p.description or '')} |" for n, p in parsers.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the models


def models_page() -> str:
    """The registry's table. Shapes only (the meta device): no weights are read but the shipped metadata."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from resdense.models import create_model, model_entries
    from resdense.models.hub import TorchvisionWeights
    from resdense.models.pretrained import read_weights_file
    from resdense.models.summary import count_params, format_count

    rows = []
    for info in model_entries():
        with torch.device("meta"):
            model = create_model(info.name).eval()
            x = torch.empty(1, *model.default_cfg.input_size)
        # summary.count_macs runs real tensors; on the meta device PyTorch's own counter gives the same MACs
        with FlopCounterMode(display=False) as counter:
            model(x)
        weights = []
        for tag, w in info.weights.items():
            if tag == "DEFAULT":
                continue
            if isinstance(w, TorchvisionWeights):
                weights.append(f"`{tag}` (ImageNet top-1 {w.top1:.1f}%)")
            else:
                acc = read_weights_file(w.path).cfg.meta.get("test_accuracy")
                weights.append(f"`{tag}` (Fashion-MNIST test {acc})")
        size = "x".join(map(str, model.default_cfg.input_size))
        rows.append(
            f"| `{info.name}` | {info.family} | {count_params(model):,} | {size} | "
            f"{format_count(counter.get_total_flops() // 2)} | {'<br>'.join(weights)} | {_cell(info.source)} |"
        )
    head = [
        "---",
        "hide: [toc]  # the table needs the width",
        "---",
        "# The registry",
        "",
        "Every registered model, generated from `resdense.models.model_entries()` when the site is built:",
        "parameters at the default classes and channels, multiply-accumulates of one forward pass at the",
        "default input size, and the named weights with the accuracy their source states.",
        "",
        "| model | family | parameters | input | MACs | weights | source |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


# ---------------------------------------------------------------- the benchmarks

# topic slug -> (title, words in a section's heading that put it there); the first match wins
TOPICS = {
    "book": ("The book's recipes", ("d2l", "book", "same work", "densenet's")),
    "time-to-accuracy": ("Time to accuracy", ("time to accuracy", "accuracy per flop", "`fast`", "epyc")),
    "serving": ("Inference and serving", ("inference", "serving", "int8", "serve")),
    "data": ("Data: streamed folders and balance", ("stream", "balance", "folder")),
    "models": (
        "Models: efficiency, memory, transfer, features",
        ("efficiency", "memory", "transfer", "features"),
    ),
}
OTHER = ("other", "Other measurements")


def results_sections(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """RESULTS.md as (preamble, [(number, heading, body)])."""
    parts = re.split(r"^## ", text, flags=re.M)
    preamble, sections = parts[0], []
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        m = re.match(r"(\d+)\.", heading)
        sections.append((int(m.group(1)) if m else 0, heading.strip(), body))
    return preamble, sections


def topic_of(heading: str) -> str:
    low = heading.lower()
    for slug, (_, words) in TOPICS.items():
        if any(w in low for w in words):
            return slug
    return OTHER[0]


def _relink(body: str) -> str:
    # RESULTS.md lives in benchmarks/; its pages live in docs/benchmarks/
    body = body.replace("](../docs/", "](../")
    return re.sub(r"\]\((?!https?:|\.\./|#)([^)]+)\)", r"](\1)", body)


def benchmark_pages() -> dict[str, str]:
    """``benchmarks/<topic>.md`` pages: each topic's sections, the newest (highest number) first."""
    preamble, sections = results_sections(RESULTS.read_text(encoding="utf-8"))
    titles = {slug: title for slug, (title, _) in TOPICS.items()} | {OTHER[0]: OTHER[1]}
    by_topic: dict[str, list] = {slug: [] for slug in titles}
    for number, heading, body in sections:
        by_topic[topic_of(heading)].append((number, heading, body))
    pages = {}
    index = ["# Benchmarks", "", preamble.partition("\n")[2].strip(), "", "## By topic", ""]
    for slug, items in by_topic.items():
        if not items:
            continue
        items.sort(key=lambda s: -s[0])
        index.append(f"- [{titles[slug]}]({slug}.md), the newest first:")
        index += [f"    - {heading}" for _, heading, _ in items]
        text = [
            f"# {titles[slug]}",
            "",
            "From `benchmarks/RESULTS.md`, the newest section first; the lab book's",
        ]
        text += ["earlier sections follow as history.", ""]
        for _number, heading, body in items:
            text += [f"## {heading}", _relink(body).replace("\n# ", "\n### ")]
        pages[f"benchmarks/{slug}.md"] = "\n".join(text) + "\n"
    index += [
        "",
        "Where a figure and its command appear in the guides: [time and accuracy](../guide/figures.md).",
    ]
    pages["benchmarks/index.md"] = "\n".join(index) + "\n"
    return pages


# ---------------------------------------------------------------- all generated pages


def generated_pages() -> dict[str, str]:
    """Every generated page, path (under docs/) -> markdown."""
    parsers = commands()
    pages = {f"cli/{name}.md": command_page(name, p) for name, p in parsers.items()}
    pages["cli/index.md"] = command_index(parsers)
    pages["models/registry.md"] = models_page()
    pages.update(benchmark_pages())
    return pages


_PAGES: dict[str, str] = {}


def on_config(config, **kwargs):
    """Fill the nav's "How-to guides" and "Benchmarks" entries from what is generated."""
    _PAGES.clear()
    _PAGES.update(generated_pages())
    for entry in config["nav"]:
        if not isinstance(entry, dict):
            continue
        key = next(iter(entry))
        if key == "How-to guides":
            entry[key] = ["cli/index.md"] + [f"cli/{n}.md" for n in commands()]
        elif key == "Benchmarks":
            entry[key] = ["benchmarks/index.md"] + sorted(
                p for p in _PAGES if p.startswith("benchmarks/") and p != "benchmarks/index.md"
            )
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for path, text in _PAGES.items():
        files.append(File.generated(config, path, content=text))
    return files
