"""Turn a finished Fashion-MNIST run into weights shipped inside the package (``--weights fashion-mnist``).

    python benchmarks/ship_weights.py runs/ship-fast --command "resdense train --recipe fast ..."

Writes ``src/resdense/models/data/fashion_mnist_<model>_<recipe>.safetensors``: the run's weights and spec
(so ``load_trained`` and ``resdense predict FILE`` read it as any run's file) plus, under the metadata key
``resdense_pretrained``, where they come from: the recipe, the test accuracy the run measured, the command,
and the run's whole resolved config (what the recipe meant on that day, whatever it means later).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from resdense.utils.io import atomic_path  # noqa: E402

DEST = ROOT / "src" / "resdense" / "models" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished resdense run folder")
    ap.add_argument("--command", required=True, help="the exact command that made the run")
    args = ap.parse_args()

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    config = json.loads((args.run / "config.json").read_text())
    summary = json.loads((args.run / "summary.json").read_text())
    weights = args.run / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    spec = json.loads(meta["resdense"])
    provenance = {
        "recipe": config["recipe"],
        "test_accuracy": summary["test_accuracy"],
        "test_set": "Fashion-MNIST test split (10,000 images), scored as the run scored it",
        "command": args.command,
        "config": {k: v for k, v in config.items() if k not in ("out", "data_dir")},
        "trained_seconds": summary["seconds"],
        "trained_on": summary["device"],
        "torch": config.get("torch"),
    }
    name = f"fashion_mnist_{spec['model']}_{config['recipe']}.safetensors"
    DEST.mkdir(parents=True, exist_ok=True)
    with atomic_path(DEST / name) as tmp:
        save_file(
            load_file(str(weights)),
            str(tmp),
            metadata={"resdense": json.dumps(spec), "resdense_pretrained": json.dumps(provenance)},
        )
    print(
        f"wrote {DEST / name}: {spec['model']}, recipe {config['recipe']}, test accuracy {summary['test_accuracy']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
