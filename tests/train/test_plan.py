"""The run settled once (train/plan.py): one frozen plan, one run folder, one model build; config.json is
the plan (the settings flat, what the run settled under "plan"); the trainer reads it and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest

from resdense.data import load_dataset
from resdense.rundir import RunDir
from resdense.train import TrainConfig, Trainer, train
from resdense.train import setup as train_setup
from resdense.train.plan import RunPlan, settle

from .conftest import NUM_CLASSES, tiny_config


def tiny(out, data_dir, **overrides) -> TrainConfig:
    """The training tests' settings over the whole toy training set, precision left to ``auto``."""
    return tiny_config(out, data_dir, **{"train_subset": 0, "amp": "auto", **overrides})


def test_settle_decides_once_and_freezes(idx_dir, tmp_path):
    # a batch larger than the training set is capped to it; auto precision is decided (the suite pins fp32)
    plan = settle(tiny(tmp_path / "run", idx_dir, batch_size=4096, train_subset=100), progress=False)
    try:
        assert isinstance(plan, RunPlan)
        assert plan.cfg.batch_size == 100 == plan.batch_per_process
        assert plan.cfg.amp == "no" and plan.amp.dtype == "fp32" and "RESDENSE_AMP" in plan.amp.reason
        assert plan.cfg.out == str(tmp_path / "run") and plan.run.path == tmp_path / "run"
        assert str(plan.device) == "cpu" and plan.input_size == 28
        assert plan.classes == [str(k) for k in range(NUM_CLASSES)] and len(plan.data.train) == 100
        with pytest.raises(dataclasses.FrozenInstanceError):
            plan.cfg = plan.cfg  # the loop reads the plan; nothing rewrites it
        trainer = Trainer(plan)
        assert trainer.run is plan.run and trainer.cfg is plan.cfg and trainer.model is plan.model
    finally:
        plan.run.unlock()


def test_one_model_build_and_config_json_is_the_plan(idx_dir, tmp_path, monkeypatch):
    built = []
    real = train_setup.create_model
    monkeypatch.setattr(train_setup, "create_model", lambda *a, **kw: built.append(a) or real(*a, **kw))
    out = tmp_path / "run"
    result = train(tiny(out, idx_dir, batch_size=4096), progress=False)
    assert len(built) == 1  # the meta-device builds (validation, sizing) allocate nothing; one real build
    config = RunDir(out).read_config()
    settings = {f.name for f in dataclasses.fields(TrainConfig)}
    # the settings flat at the top, the record keys written before plans, and one nested "plan"
    assert set(config) == settings | {"preprocess", "classes", "data_source", "torch", "world_size", "plan"}
    assert config["batch_size"] == 256 and config["amp"] == "no"  # as run: capped, decided
    plan = config["plan"]
    assert (
        plan["device"] == "cpu" and plan["precision"] == "fp32" and "RESDENSE_AMP" in plan["precision_reason"]
    )
    assert plan["batch_per_process"] == 256 and plan["input_size"] == 28 and plan["train_images"] == 256
    assert plan["params"] == result.summary["params"] and plan["test_images"] == 64
    # the settings part is a run's settings again (what a resume and --config read back)
    assert TrainConfig(**{k: v for k, v in config.items() if k in settings}).batch_size == 256


def test_a_trainer_built_from_settings_settles_its_own_plan(idx_dir, tmp_path):
    # the Python call of earlier versions: Trainer(cfg, dataset, out_dir) still works, through a plan
    trainer = Trainer(tiny(None, idx_dir), load_dataset("idx", idx_dir), tmp_path / "t", progress=False)
    assert isinstance(trainer.plan, RunPlan) and trainer.run.path == tmp_path / "t"
    assert trainer.cfg.out == str(tmp_path / "t") and trainer.cfg.amp == "no"
