"""Issue 19: a seeded fuzz of the model-file readers. Hundreds of damaged .safetensors and .pth files and
random metadata: each either loads (and then, for a file carrying its digest, answers exactly as the original
does) or is refused with one UserError line naming the file; never a traceback."""

from __future__ import annotations

import io
import json
import random
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from resdense.errors import UserError
from resdense.modelfile import DIGEST_KEY, SPEC_KEY, digest
from resdense.rundir import RunDir
from resdense.serve.load import load_predictor

SEED = 19
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch on damaged storages
N_BYTES, N_META = 220, 100  # damaged files, random metadata: a few seconds in all


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # flipped bits
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # random bytes
        for _ in range(rng.randint(1, 30)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:  # truncated
        del b[rng.randrange(len(b)) :]
    elif kind == 3:  # inserted
        i = rng.randrange(len(b))
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    else:  # cut out
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 256)]
    return bytes(b)


_ODD = [None, -1, 0, 1, 2.5, 10**9, "x", "", [], {}, [1, "a"], True, float("nan"), float("inf"), 60_000_000]


def _odd_spec(rng: random.Random, spec: dict) -> dict:
    s = json.loads(json.dumps(spec))
    for _ in range(rng.randint(1, 3)):
        where = rng.choice([d for d in (s, s, s.get("options"), s.get("preprocess")) if isinstance(d, dict)])
        key = rng.choice([*where, "extra"])
        if rng.random() < 0.2:
            where.pop(key, None)
        else:
            where[key] = rng.choice(_ODD)
    return s


def _attempt(path, arch=None):
    try:
        return load_predictor(path, arch=arch)
    except UserError as e:
        text = str(e)
        assert text and "\n" not in text and "Traceback" not in text, text
        return None


@pytest.fixture(scope="module")
def originals(tmp_path_factory, finished_run):
    folder = tmp_path_factory.mktemp("fuzz-originals")
    st = folder / "model.safetensors"
    shutil.copy(finished_run[0] / RunDir.WEIGHTS, st)
    state = torch.load(finished_run[0] / RunDir.CHECKPOINT, weights_only=True)["model"]
    buf = io.BytesIO()
    torch.save(state, buf)
    return st, buf.getvalue()


def test_fuzzed_model_files_load_right_or_fail_in_one_line(originals, tmp_path):
    st, pth = originals
    good = st.read_bytes()
    x = torch.randint(
        0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(SEED), dtype=torch.uint8
    )
    expected = load_predictor(st).predict_logits(x)
    rng = random.Random(SEED)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(N_BYTES):
        safetensors = rng.random() < 0.5
        path = tmp_path / (f"f{i}.safetensors" if safetensors else f"f{i}.pth")
        path.write_bytes(_mutate(rng, good if safetensors else pth))
        p = _attempt(path, None if safetensors else "resnet20")
        outcomes["loaded" if p is not None else "refused"] += 1
        if p is not None and safetensors:  # it carries the digest: what loads is the original, exactly
            torch.testing.assert_close(p.predict_logits(x), expected, rtol=0, atol=0)
        path.unlink()
    assert outcomes["refused"] > N_BYTES // 2, outcomes


def test_fuzzed_metadata_loads_right_or_fails_in_one_line(originals, tmp_path):
    st, _ = originals
    with safe_open(str(st), framework="pt") as f:
        meta = dict(f.metadata())
    state = load_file(str(st))
    spec = json.loads(meta[SPEC_KEY])
    rng = random.Random(SEED + 1)
    refused = 0
    for i in range(N_META):
        m = {SPEC_KEY: json.dumps(_odd_spec(rng, spec))}
        if rng.random() < 0.5:  # an authentic digest over wrong metadata: the checks behind it must hold
            m[DIGEST_KEY] = digest(state, m)
        path = tmp_path / f"m{i}.safetensors"
        save_file(state, str(path), metadata=m)
        refused += _attempt(path) is None
        path.unlink()
    assert refused > N_META // 2
