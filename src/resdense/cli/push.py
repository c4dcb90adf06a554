"""``resdense push``: a finished run to the Hugging Face Hub, with its model card (serve/share.py)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload a trained run to the Hugging Face Hub, with a model card",
        description="Upload a finished run to a Hugging Face Hub model repository in one commit: its model "
        "file, a timm-shaped config.json and a model card made from the run (what `resdense export RUN "
        "--format hub --out DIR` writes locally). The token comes from HF_TOKEN or `hf auth login`'s cache "
        "and is never printed.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="finished run folder")
    p.add_argument(
        "--repo", required=True, metavar="ORG/NAME", help="the Hub repository (created if missing)"
    )
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", metavar="BRANCH", help="the branch to commit to (default: main)")
    p.add_argument(
        "--commit-message", metavar="TEXT", help="the commit's message (default: the run and its accuracy)"
    )
    p.set_defaults(func=run_push)


def run_push(args) -> int:
    from ..serve.share import push_to_hub

    url = push_to_hub(
        args.run,
        args.repo,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        say=print,
    )
    print(f"pushed {args.run} to https://huggingface.co/{args.repo} ({url})")
    print(f"load it with: resdense predict IMAGE --weights hf-hub:{args.repo}")
    return 0
