"""``--amp auto``: bf16 autocast where this device's bf16 path measures faster, fp32 elsewhere; cached."""

from __future__ import annotations

import json

import pytest
import torch

from resdense.errors import UserError
from resdense.train import TrainConfig
from resdense.train.config import validate
from resdense.utils import amp

CPU = torch.device("cpu")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No $RESDENSE_AMP (the suite pins fp32), an empty cache, and a probe that counts its calls."""
    monkeypatch.delenv(amp.AMP_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(amp, "onednn_bf16", lambda: True)
    calls = []

    def probe(speedup: float):
        def fake() -> float:
            calls.append(speedup)
            return speedup

        monkeypatch.setattr(amp, "probe_speedup", fake)

    return probe, calls


def test_yes_and_no_force_it_and_old_booleans_keep_their_meaning():
    assert amp.decide_amp("yes", CPU).enabled and not amp.decide_amp("no", CPU).enabled
    assert amp.decide_amp("YES", CPU).dtype == "bf16"
    # True, before auto, meant bf16 on CUDA and fp32 on a CPU: an old CPU run resumes in fp32
    assert amp.amp_mode(True, CPU) == "no" and amp.amp_mode(True, torch.device("cuda")) == "yes"
    assert amp.amp_mode(False, torch.device("cuda")) == "no"
    assert not amp.decide_amp(True, CPU).enabled


def test_auto_takes_bf16_when_the_probe_measures_it_faster_and_caches_the_answer(fresh):
    probe, calls = fresh
    probe(3.0)
    first = amp.decide_amp("auto", CPU)
    assert first.enabled and "3.00x" in first.reason
    assert amp.decide_amp("auto", CPU) == first and calls == [3.0]  # the second asks the cache
    cached = json.loads(amp.cache_file().read_text())
    assert cached[amp.cache_key()]["speedup"] == 3.0
    assert torch.__version__ in amp.cache_key() and amp.cpu_model() in amp.cache_key()


def test_auto_keeps_fp32_where_bf16_is_not_faster_and_another_torch_probes_again(fresh, monkeypatch):
    probe, calls = fresh
    probe(0.4)  # an emulated bf16 path: slower
    assert not amp.decide_amp("auto", CPU).enabled
    probe(1.1)  # faster, but not by MIN_SPEEDUP
    monkeypatch.setattr(amp, "cache_key", lambda: "another cpu or torch")
    decision = amp.decide_amp("auto", CPU)
    assert not decision.enabled and decision.dtype == "fp32" and calls == [0.4, 1.1]


def test_no_probe_where_onednn_reports_no_bf16_and_the_env_answers_without_one(fresh, monkeypatch):
    probe, calls = fresh
    probe(9.0)
    monkeypatch.setattr(amp, "onednn_bf16", lambda: False)
    assert not amp.decide_amp("auto", CPU).enabled and calls == []
    monkeypatch.setenv(amp.AMP_ENV, "bf16")
    assert amp.decide_amp("auto", CPU).enabled and calls == []


def test_a_broken_cache_is_probed_again(fresh):
    probe, calls = fresh
    probe(2.0)
    amp.cache_file().parent.mkdir(parents=True)
    amp.cache_file().write_text("{not json")
    assert amp.decide_amp("auto", CPU).enabled and calls == [2.0]


def test_the_real_probe_measures_a_ratio_and_leaves_the_random_state_alone():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    x = amp.probe_speedup(rounds=1, steps=1)
    assert x > 0 and torch.equal(torch.get_rng_state(), before)


def test_validate_names_the_option():
    validate(TrainConfig(amp="auto"))
    validate(TrainConfig(amp=False))
    with pytest.raises(UserError, match="--amp: expected one of auto, yes, no, got 'maybe'"):
        validate(TrainConfig(amp="maybe"))


def test_unknown_amp_env_value_is_warned_not_ignored(fresh, monkeypatch, caplog) -> None:
    """``RESDENSE_AMP=garbage`` once decided silently (issue 37): now it is said, and auto decides."""
    probe, calls = fresh
    probe(2.0)
    monkeypatch.setenv(amp.AMP_ENV, "garbage")
    with caplog.at_level("WARNING", logger="resdense"):
        decision = amp.decide_amp("auto", CPU)
    assert "RESDENSE_AMP='garbage' is not one of bf16, fp32" in caplog.text
    assert decision.enabled and calls  # the probe decided, as for no value
    for value in ("BF16", " fp32 "):
        monkeypatch.setenv(amp.AMP_ENV, value)
        caplog.clear()
        amp.decide_amp("auto", CPU)
        assert "not one of" not in caplog.text
