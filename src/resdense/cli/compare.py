"""``resdense compare``: runs side by side and one plot of their test-accuracy curves."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare finished runs: a table and a test-accuracy plot")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--plot", default="compare.png", help="where to write the plot (default compare.png)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serve.compare import compare, format_settings, format_table
    from ..utils.outputs import check_output

    # before any work: a PNG file name in an existing folder (the default one is rewritten each time)
    check_output(args.plot, option="--plot", suffixes=(".png",), overwrite_ok=True)
    rows = compare(args.runs, plot=args.plot)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, markdown=args.markdown))
        if len(rows) > 1:
            diff = {k: [r["settings"][k] for r in rows] for k in rows[0]["settings"]}
            print(format_settings(diff, [r["run"] for r in rows]))
        print(f"plot: {args.plot}")
    return 0
