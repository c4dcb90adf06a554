"""``resdense convert``: Fashion-MNIST or any IDX set written as an image folder of PNG files."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="write Fashion-MNIST (or an IDX set) as an image folder: OUT/train|test/<class>/<n>.png",
        description="Write a data set as a folder of PNG images in class sub-folders (train/ and test/), "
        "the layout `resdense train --dataset folder --data-dir OUT` reads, in memory or streamed.",
    )
    p.add_argument("out", metavar="OUT", help="the folder to write (must not hold files, unless --force)")
    p.add_argument("--dataset", choices=["fashion-mnist", "idx"], default="fashion-mnist")
    p.add_argument(
        "--data-dir", help="where the data is (default for fashion-mnist: searched, then downloaded)"
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it holds files")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import load_dataset
    from ..data.convert import write_image_folder
    from ..utils.outputs import check_output

    check_output(args.out, option="OUT", kind="folder")  # before the data is read (or downloaded)
    dataset = load_dataset(args.dataset, args.data_dir)
    counts = write_image_folder(dataset, args.out, force=args.force)
    print(
        f"wrote {counts['train']:,} training and {counts['test']:,} test images of {len(dataset.classes)} "
        f"classes to {args.out}"
    )
    return 0
