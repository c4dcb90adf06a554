"""``benchmarks/gpu.sh smoke``: every step of the GPU check, at toy size on the CPU, so the first GPU's minutes
go to measuring rather than to fixing the script."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_step_of_the_gpu_check_runs_at_toy_size(real_fashion_mnist_dir, tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "RESDENSE_DATA": real_fashion_mnist_dir,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for step in ("== 1.", "== 2.", "== 3.", "== 4."):
        assert step in res.stdout
    assert "nvidia-smi" not in res.stderr
    throughput = json.loads((tmp_path / "throughput_gpu.json").read_text())
    assert {r["side"] for r in throughput["results"]} == {"seed", "ours"}
    assert all(r["median"] > 0 for r in throughput["results"])
    tta = json.loads((tmp_path / "time_to_accuracy_gpu.json").read_text())
    assert [r["recipe"] for r in tta["runs"]] == ["gpu"] and tta["seed_speeds"] == [107, 107]
    assert 0 <= tta["runs"][0]["final_acc"] <= 1
    memory = json.loads((tmp_path / "memory_gpu.json").read_text())
    assert memory["plain"]["peak_mb"] > 0 and memory["memory_efficient"]["peak_mb"] > 0
    # step 4: the degradation study at the paper's size (cut to toy scale): every depth up to 110, its report
    paper = tmp_path / "degradation-paper"
    assert {p.name for p in (paper / "runs").iterdir()} == {
        "plain20-seed0",
        "plain110-seed0",
        "resnet20-seed0",
        "resnet110-seed0",
    }
    report = (paper / "report.md").read_text()
    assert (
        "- schedule: `step`" in report
        and "- augment: `flip-crop`" in report
        and "- crop_padding: `4`" in report
    )
