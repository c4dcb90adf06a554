"""The training loop: d2l's ``train_ch6`` grown into a tool.

Data lives on the training device as uint8 tensors; each step takes a batch of indices, augments the batch
with tensor operations, runs one optimizer step and keeps its loss and accuracy on the device (no host sync
in the hot loop except when the progress bar redraws). Under ``torchrun`` the model is wrapped in PyTorch's
own DistributedDataParallel; nothing here re-implements communication.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Dataset, ImageSet
from ..data.split import holdout
from ..data.stream import BAD_IMAGES_NAME, StreamedFolder
from ..data.transforms import CROP_PCT, PHOTO_AUGMENT, Preprocess, augment, resize
from ..errors import UserError
from ..models import create_model
from ..models.registry import UnknownModelError
from ..models.summary import count_macs, count_params
from ..utils.io import write_json
from ..utils.progress import ProgressBar
from ..utils.system import freed_memory_kept
from ..weights import WEIGHTS_NAME, ModelSpec, unwrap
from . import distributed as dist_utils
from .callbacks import TENSORBOARD_DIR, Callback, default_callbacks
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .loader import epoch_generator, eval_batches, steps_per_epoch, train_batches
from .optim import freeze, make_optimizer
from .recipes import OPTIMIZERS, SCHEDULES, TrainConfig


@dataclass
class TrainResult:
    out_dir: Path
    summary: dict
    history: list[dict]


class NonFiniteLoss(UserError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return dev


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_ep: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = int(cfg.warmup_epochs * steps_per_ep)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total_steps - warmup)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr * (1 - t)
    if cfg.schedule == "onecycle":
        # linear ramp up over the first 20%, then linearly down to zero: a triangle (airbench style)
        peak = 0.2
        return cfg.lr * (t / peak if t < peak else (1 - t) / (1 - peak))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def size_at(cfg: TrainConfig, epoch: int, full: int) -> int:
    """The training side for epoch ``epoch`` (0-based) under progressive resizing; ``full`` when it is off.

    Small images early are cheap (the cost goes with the area) and teach the coarse shapes the first epochs
    learn anyway; the last epochs, and every evaluation, see the full size, so batch norm ends calibrated
    to it."""
    if not cfg.progressive_from or cfg.progressive_from >= full:
        return full
    # epochs 0..ramp grow to the full side; the last epoch is always at the full side (a 1-epoch run: all)
    ramp = min(round(cfg.progressive_until * cfg.epochs), cfg.epochs) - 1
    if ramp <= 0:
        return full
    return round(cfg.progressive_from + (full - cfg.progressive_from) * min(1.0, epoch / ramp))


def evaluates_at(cfg: TrainConfig, epoch: int, full: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a test (and validation) score: always the last; the
    others every ``eval_every`` epochs, unless they trained on downscaled images. Those are skipped because
    their batch-norm statistics come from the smaller images, so a full-size score describes a model nobody
    uses (0.2-0.3 after the first epoch of ``fast``), while each scoring costs about 4 s on 2 vCPUs."""
    if epoch + 1 == cfg.epochs:
        return True
    if not cfg.eval_every or (epoch + 1) % cfg.eval_every:
        return False
    return size_at(cfg, epoch, full) == full


def xavier_init(model: nn.Module) -> None:
    """d2l's ``init_weights``: Xavier-uniform weights for every conv and linear layer."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)


def check_config(cfg: TrainConfig) -> None:
    """One-line errors for settings that cannot work, before any data is read."""
    if cfg.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer: unknown {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule: unknown {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise UserError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.resize is not None and cfg.resize < 8:
        raise UserError(f"--resize must be at least 8 pixels, got {cfg.resize}")
    if cfg.train_subset < 0:
        raise UserError(f"--train-subset must be >= 0, got {cfg.train_subset}")
    if not cfg.head_lr_mult > 0:
        raise UserError(f"--head-lr-mult must be positive, got {cfg.head_lr_mult}")
    if cfg.crop is not None and (cfg.crop < 8 or (cfg.resize is not None and cfg.crop > cfg.resize)):
        raise UserError(f"--crop must be between 8 and --resize ({cfg.resize}), got {cfg.crop}")
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.val_split < 0:
        raise UserError(f"--val-split must be >= 0, got {cfg.val_split}")
    if cfg.progressive_from and cfg.progressive_from < 8:
        raise UserError(
            f"--progressive-from must be 0 (off) or at least 8 pixels, got {cfg.progressive_from}"
        )
    if cfg.eval_every < 0:
        raise UserError(f"--eval-every must be >= 0 (0: the last epoch only), got {cfg.eval_every}")
    if not 0 < cfg.progressive_until <= 1:
        raise UserError(f"--progressive-until must be in (0, 1], got {cfg.progressive_until}")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units, computed in chunks (no big float copy)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(8192):
        x = chunk.to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        s += x.sum(1).cpu()
        s2 += (x * x).sum(1).cpu()
    n = images.numel() / c
    mean = s / n
    std = (s2 / n - mean**2).clamp(min=1e-12).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    *,
    tta_flip: bool = False,
    batch_size: int = 1024,
    channels_last: bool = False,
    autocast: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images, in batches, with the optional mirror-image test-time augmentation."""
    outs = []
    dev = images.device
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        for chunk in images.split(batch_size):
            x = preprocess(chunk)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            if tta_flip:
                logits = 0.5 * (logits + model(x.flip(-1)).float())
            outs.append(logits)
    return torch.cat(outs)


class Trainer:
    """Holds everything a run needs; ``fit()`` runs it. Built by :func:`train`."""

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: Dataset | StreamedFolder,
        out_dir: Path,
        progress: bool = True,
        pretrained=None,
    ):
        self.cfg = cfg
        self.out_dir = out_dir
        self.dist = dist_utils.current()
        self.device = self.dist.device if self.dist.enabled else resolve_device(cfg.device)
        self.is_main = self.dist.rank == 0
        self.progress = progress and self.is_main
        self.autocast = cfg.amp and self.device.type == "cuda"

        if isinstance(dataset, StreamedFolder):
            # Data streamed from the files, decoded batch by batch at the input size (data/stream.py); the
            # workers take the evaluation's centre crop themselves, so the batch is not cropped again
            train, self.test_set = dataset.streams(size=cfg.crop or cfg.resize, augment=cfg.augment, workers=cfg.workers,
                                                   pin_memory=self.device.type == "cuda")  # fmt: skip
            self.train_set = train.subset(cfg.train_subset)
            c, size = train.channels, train.size
            mean, std = channel_stats(train.sample()) if cfg.normalize else ((0.0,) * c, (1.0,) * c)
            self.batch_augment = train.batch_augment  # what the workers left for the batch
            crop, self.val_set = None, None
            # evaluated as photos (shorter side to size / CROP_PCT, centre crop): models saved from this run
            # are fed the same way by predict and evaluate, as near as a square resize gets
            photo_eval = cfg.augment == PHOTO_AUGMENT
            if cfg.val_split:
                raise UserError(
                    "--val-split: not available for streamed folders; give the folder a val/ split"
                )
        else:
            # Data: resize once, up front, on the device; what remains per batch is augmentation.
            train, val = dataset.train, None
            if cfg.val_split:  # held out first: the validation images do not depend on --train-subset
                if cfg.val_split >= len(train):
                    raise UserError(
                        f"--val-split {cfg.val_split}: the training set has only {len(train)} images"
                    )
                train, val = holdout(train, cfg.val_split)
            train, test = train.subset(cfg.train_subset), dataset.test
            c = dataset.image_shape[0]
            mean, std = channel_stats(train.images) if cfg.normalize else ((0.0,) * c, (1.0,) * c)
            size = cfg.resize or dataset.image_shape[1]
            self.train_set = ImageSet(
                resize(train.images.to(self.device), cfg.resize), train.labels.to(self.device)
            )
            self.test_set = ImageSet(
                resize(test.images.to(self.device), cfg.resize), test.labels.to(self.device)
            )
            self.val_set = None if val is None else ImageSet(resize(val.images.to(self.device), cfg.resize),
                                                             val.labels.to(self.device))  # fmt: skip
            self.batch_augment = cfg.augment
            crop, photo_eval = cfg.crop, False
        self.preprocess = Preprocess(size=size, mean=mean, std=std, in_chans=c, crop=crop)
        self.classes = dataset.classes
        self.dataset = dataset

        # Model
        torch.manual_seed(cfg.seed)
        try:
            model = create_model(cfg.model, num_classes=len(self.classes), in_chans=c,
                                 weights=pretrained if pretrained is not None else cfg.weights,
                                 progress=self.progress, **cfg.model_options)  # fmt: skip
        except UnknownModelError as e:
            raise UserError(f"--model: {e}") from None
        except TypeError as e:
            raise UserError(f"--model {cfg.model}: bad model option ({e})") from None
        options = dict(cfg.model_options)
        if cfg.init == "xavier" and cfg.weights is None:
            xavier_init(model)
        if cfg.weights is not None:
            options = self.adopt_pretrained(model, options)
        trainable = freeze(model, cfg.freeze)
        if cfg.freeze != "none" and self.is_main:
            self.say(f"--freeze {cfg.freeze}: {trainable:,} of {count_params(model):,} parameters train")
        served = self.preprocess
        if photo_eval:
            served = replace(served, size=round(served.size / CROP_PCT), crop=served.size)
        self.spec = ModelSpec(cfg.model, {"num_classes": len(self.classes), "in_chans": c, **options},
                              served, list(self.classes), cfg.tta_flip)  # fmt: skip
        self.params = count_params(model)
        try:
            side = self.preprocess.input_size or size
            self.macs = count_macs(model, (c, side, side))
        except ValueError as e:
            raise UserError(f"--model {cfg.model}: {e}") from None
        if cfg.sync_bn:
            model = self.dist.convert_sync_bn(model)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        model = model.to(self.device, memory_format=memory_format)
        self.model = model
        self.ema_model = copy.deepcopy(model).eval() if cfg.ema > 0 else None
        self.optimizer = make_optimizer(cfg, model)
        self.ddp_model = self.dist.wrap(model)
        self.step_model = torch.compile(self.ddp_model) if cfg.compile else self.ddp_model
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        world = self.dist.world_size
        if cfg.batch_size % world:
            raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes")
        if len(self.train_set) < cfg.batch_size:
            raise UserError(
                f"--batch-size {cfg.batch_size} is larger than the {len(self.train_set)} training images"
            )
        self.steps_per_epoch = steps_per_epoch(len(self.train_set), cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.history: list[dict] = []
        self.start_epoch = 0
        self.elapsed = 0.0  # training seconds before this process (resumed runs)

    def adopt_pretrained(self, model: nn.Module, options: dict) -> dict:
        """Feed the data as the weights were fed (their mean/std); the builder options they came with."""
        pcfg = getattr(model, "pretrained_cfg", {})
        mean, std = pcfg.get("mean"), pcfg.get("std")
        if mean is not None and len(mean) == self.preprocess.in_chans and tuple(mean) != self.preprocess.mean:
            self.preprocess = replace(self.preprocess, mean=tuple(mean), std=tuple(std))
            if self.is_main:
                self.say(f"normalising with the weights' mean {_fmt(mean)} and std {_fmt(std)}")
        known = list(pcfg.get("classes") or [])
        if known and known != list(self.classes) and len(known) == len(self.classes):
            # the same number of classes, but other ones: their output layer means nothing here
            model.reset_classifier(len(self.classes))
            if self.is_main:
                self.say(f"classifier re-initialised: the weights' classes ({', '.join(known[:3])}, ...) are "
                         f"not this data set's ({', '.join(self.classes[:3])}, ...)")  # fmt: skip
        inherited = {
            k: v for k, v in (pcfg.get("options") or {}).items() if k not in ("num_classes", "in_chans")
        }
        return {**inherited, **options}

    # -- state ------------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
        }

    def load_state(self, ckpt: dict) -> None:
        unwrap(self.model).load_state_dict(ckpt["model"])
        if self.ema_model is not None and ckpt.get("ema") is not None:
            self.ema_model.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.history = list(ckpt["history"])
        self.start_epoch = int(ckpt["epoch"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))

    # -- the loop ---------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        cfg, dev = self.cfg, self.device
        model = self.step_model
        model.train()
        # Every random choice of the epoch derives from (seed, epoch): a resumed run replays it exactly.
        torch.manual_seed(cfg.seed * 7919 + epoch)
        gen = epoch_generator(cfg.seed, epoch, stream=1 + self.dist.rank, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        bar = ProgressBar(self.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", enabled=self.progress)
        t0 = time.perf_counter()
        batches = train_batches(self.train_set, cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                rank=self.dist.rank, world_size=self.dist.world_size)  # fmt: skip
        full = self.preprocess.input_size or self.preprocess.size
        side = size_at(cfg, epoch, full)
        for i, (xb, yb) in enumerate(batches):
            step = epoch * self.steps_per_epoch + i
            lr = lr_at(cfg, step, self.total_steps, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            # a no-op for in-memory batches; streamed ones arrive as uint8 on the host
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if self.batch_augment == "rrc-flip":  # in memory: crops of the whole image, not of the eval crop
                x = augment(replace(self.preprocess, crop=None)(xb), "rrc-flip", gen,
                            out_size=self.preprocess.input_size)  # fmt: skip
            else:
                x = self.preprocess(xb)
                if self.batch_augment != "none":
                    x = augment(x, self.batch_augment, gen, cfg.crop_padding)
            if side != full:  # after augmentation, so crops and erasing keep their meaning in pixels
                x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
            x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = model(x)
                loss = self.criterion(logits.float(), yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema_model is not None:
                self.update_ema(step)
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.argmax(1) == yb).sum()
            seen += yb.shape[0]
            if bar.due():
                secs = time.perf_counter() - t0
                bar.update(i + 1, f"loss {loss_sum.item() / seen:.3f} acc {correct.item() / seen:.3f} "
                                  f"{seen * self.dist.world_size / secs:,.0f} img/s")  # fmt: skip
        bar.close()
        totals = self.dist.all_reduce_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype)]))
        seen_all = seen * self.dist.world_size
        loss_avg = totals[0].item() / seen_all
        if not math.isfinite(loss_avg):
            raise NonFiniteLoss(
                f"the training loss became {loss_avg} in epoch {epoch + 1}; stopped, the last good checkpoint "
                f"is kept in {self.out_dir} (try a lower --lr)"
            )
        secs = time.perf_counter() - t0
        return {"train_loss": loss_avg, "train_acc": totals[1].item() / seen_all, "seconds": secs,
                "images_per_s": seen_all / secs, "lr": lr}  # fmt: skip

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        # warm the average up: early weights are far from the final ones (decay grows to cfg.ema)
        d = min(self.cfg.ema, (1 + step) / (10 + step))
        for e, p in zip(self.ema_model.parameters(), unwrap(self.model).parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema_model.buffers(), unwrap(self.model).buffers()):
            e.copy_(b)

    def eval_model(self) -> nn.Module:
        return self.ema_model if self.ema_model is not None else unwrap(self.model)

    def evaluate(self, final: bool = True, data: ImageSet | None = None) -> float:
        """Test accuracy (or on ``data``: the validation split); under torchrun each process scores a share
        and all agree on the sum.

        The mirror-image test-time augmentation doubles the cost of an evaluation, so it is applied to the
        final one only: earlier epochs' figures are for plotting, the final one is the run's result.
        """
        model = self.eval_model()
        self.dist.broadcast_buffers(model)  # score rank 0's model (the saved one) on every rank
        model.eval()
        data = self.test_set if data is None else data
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for xb, yb in eval_batches(data, self.cfg.eval_batch_size, self.dist.rank, self.dist.world_size):
            xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            logits = predict_logits(model, xb, self.preprocess, tta_flip=self.cfg.tta_flip and final,
                                    batch_size=self.cfg.eval_batch_size,
                                    channels_last=self.cfg.channels_last, autocast=self.autocast)  # fmt: skip
            correct += (logits.argmax(1) == yb).sum()
        total = self.dist.all_reduce_sum(correct.double())
        return total.item() / len(data)

    def fit(self, callbacks: list[Callback] | None = None) -> TrainResult:
        """Train from ``start_epoch`` on. ``callbacks`` (default: the run's own, see
        :func:`~resdense.train.callbacks.default_callbacks`) run on the main process only."""
        cfg = self.cfg
        if callbacks is None:
            callbacks = default_callbacks(progress=self.progress, tensorboard=cfg.tensorboard)
        callbacks = list(callbacks) if self.is_main else []
        for cb in callbacks:
            cb.on_train_start(self)
        test_acc = self.history[-1].get("test_acc", 0.0) if self.history else 0.0
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = self.train_epoch(epoch)
            row = {"epoch": epoch + 1, "train_loss": row["train_loss"], "train_acc": row["train_acc"],
                   "lr": row["lr"], "seconds": row["seconds"], "images_per_s": row["images_per_s"]}  # fmt: skip
            if evaluates_at(cfg, epoch, self.preprocess.input_size or self.preprocess.size):
                final = epoch + 1 == cfg.epochs
                row["test_acc"] = test_acc = self.evaluate(final)
                if self.val_set is not None:
                    row["val_acc"] = self.evaluate(final, self.val_set)
            self.elapsed += time.perf_counter() - t0
            self.history.append(row)
            for cb in callbacks:
                cb.on_epoch_end(self, row)
        summary = self.summary(test_acc)
        for cb in callbacks:
            cb.on_train_end(self, summary)
        self.dist.barrier()
        return TrainResult(self.out_dir, summary, self.history)

    def summary(self, test_acc: float) -> dict:
        h = self.history
        train_secs = sum(r["seconds"] for r in h)
        images = sum(r["seconds"] * r["images_per_s"] for r in h)
        return {
            "model": self.cfg.model,
            "recipe": self.cfg.recipe,
            "test_accuracy": test_acc,
            "best_test_accuracy": max((r["test_acc"] for r in h if "test_acc" in r), default=0.0),
            **self.val_summary(),
            "epochs": len(h),
            "seconds": round(self.elapsed, 2),
            "images_per_s": images / train_secs if train_secs else 0.0,
            "params": self.params,
            "macs": self.macs,
            "device": self.device_label(),
            "world_size": self.dist.world_size,
        }

    def val_summary(self) -> dict:
        if self.val_set is None or not self.history:
            return {}
        return {"val_accuracy": self.history[-1]["val_acc"], "val_images": len(self.val_set)}

    def device_label(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = f"cpu ({torch.get_num_threads()} threads)"
        return f"{name} x{self.dist.world_size}" if self.dist.world_size > 1 else name

    def say(self, msg: str) -> None:
        print(msg, flush=True)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def default_out_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to mix two runs in one folder unless asked to."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if resume:
        if not (out / CHECKPOINT_NAME).exists():
            raise UserError(f"--resume {out}: no {CHECKPOINT_NAME} in this folder, nothing to resume")
        return
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UserError(f"--out {out}: folder holds another run; use --resume to continue it or --force "
                            "to overwrite it")  # fmt: skip
        for name in (
            CHECKPOINT_NAME,
            WEIGHTS_NAME,
            "metrics.csv",
            "summary.json",
            "curves.png",
            "config.json",
            BAD_IMAGES_NAME,
        ):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        shutil.rmtree(out / TENSORBOARD_DIR, ignore_errors=True)  # another run's logs would mix with ours
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder ({e.strerror})") from None


def check_in_memory(cfg: TrainConfig) -> None:
    from ..data.stream import IN_MEMORY

    if cfg.in_memory not in IN_MEMORY:
        raise UserError(f"--in-memory: expected one of {', '.join(IN_MEMORY)}, got {cfg.in_memory!r}")
    if cfg.in_memory == "no":
        raise UserError(f"--in-memory no: only image folders are streamed; {cfg.dataset} is held in memory")


def _load_folder(cfg: TrainConfig, dist, out: Path) -> tuple[TrainConfig, Dataset | StreamedFolder]:
    """The folder in memory or streamed (``cfg.in_memory`` resolved to yes/no, so a resume takes the same
    path), after a header scan for bad files; those left out by ``--skip-bad-images`` are listed in the run
    folder."""
    from ..data.stream import load_folder, memory_budget, write_bad_list

    if cfg.data_dir is None:
        raise UserError("--dataset folder needs --data-dir (a folder of class sub-folders)")
    device = dist.device if dist.enabled else resolve_device(cfg.device)
    dataset, bad = load_folder(cfg.data_dir, in_memory=cfg.in_memory, budget_bytes=memory_budget(device),
                               augment=cfg.augment, skip_bad_images=cfg.skip_bad_images, image_size=cfg.resize)  # fmt: skip
    cfg = cfg.with_overrides(in_memory="no" if isinstance(dataset, StreamedFolder) else "yes")
    if bad and dist.rank == 0:
        write_bad_list(out / BAD_IMAGES_NAME, bad)
        files = "file" if len(bad) == 1 else "files"
        print(f"left out {len(bad):,} bad image {files} (listed in {out / BAD_IMAGES_NAME})", flush=True)
    return cfg, dataset


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
    initial_state: dict | None = None,
) -> TrainResult:
    """Train a model as ``cfg`` says; the Python twin of ``resdense train``.

    ``resume``: a run folder whose checkpoint to continue (its config is used; ``cfg`` is ignored).
    ``dataset``: an already loaded :class:`Dataset` (otherwise ``cfg.dataset`` is loaded).
    ``progress``: progress bars (on a terminal, or tqdm's widget in a notebook) and, in a notebook, the live
    figure of the curves. ``callbacks``: your own :class:`~resdense.train.callbacks.Callback` objects, called
    after the run's own on the main process. ``cfg.tensorboard`` also logs to ``<run>/tensorboard``.
    ``initial_state``: a state dict for ``cfg.model`` to start from instead of its fresh initialisation
    (e.g. a trained net made deeper); ignored when resuming, where the checkpoint holds the weights.

    A library call leaves the process as it found it: torch's random state is restored afterwards (the run
    seeds its own from ``cfg.seed``), and the allocator setting that speeds up CPU training is undone.
    """
    # the run's seeds must not leak into the caller's random stream: fork (save and restore) torch's
    # generators, the CPU's and the training GPU's (under torchrun, the local rank's)
    device = str(cfg.device or "auto")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    index = (torch.device(device).index or 0) if device.startswith("cuda:") else 0
    gpus = [int(os.environ.get("LOCAL_RANK", index))] if cuda else []
    with torch.random.fork_rng(devices=gpus):
        return _train(
            cfg,
            dataset=dataset,
            resume=resume,
            force=force,
            progress=progress,
            callbacks=callbacks,
            initial_state=initial_state,
        )


def _train(cfg, *, dataset, resume, force, progress, callbacks, initial_state) -> TrainResult:
    dist = dist_utils.setup(cfg.device)
    try:
        if resume is not None:
            tensorboard = cfg.tensorboard
            out = Path(resume)
            prepare_out_dir(out, resume=True, force=False)
            ckpt = load_checkpoint(out / CHECKPOINT_NAME)
            saved = TrainConfig(**{**ckpt["config"], "out": str(out)})
            # a resumed run may be given more epochs or another device; everything else is the run's own
            cfg = saved.with_overrides(epochs=max(cfg.epochs, saved.epochs) if cfg.epochs != saved.epochs else None,
                                       device=cfg.device)  # fmt: skip
            cfg = cfg.with_overrides(tensorboard=tensorboard or None)  # it may be switched on at resume
        else:
            check_config(cfg)
            out = Path(cfg.out) if cfg.out else default_out_dir(cfg.model)
            if dist.rank == 0:
                prepare_out_dir(out, resume=False, force=force)
            cfg = cfg.with_overrides(out=str(out))
            ckpt = None
        run_callbacks = [
            *default_callbacks(progress=progress, tensorboard=cfg.tensorboard),
            *(callbacks or []),
        ]
        pretrained = None
        if cfg.weights is not None:
            from ..models.pretrained import PretrainedError, load_pretrained

            # read (or download) the weights before the data: a wrong source fails at once
            pretrained = load_pretrained(cfg.weights, cfg.model, progress=progress and dist.rank == 0)
            if pretrained.model and pretrained.model != cfg.model:
                raise PretrainedError(f"--weights {cfg.weights}: weights for {pretrained.model}, not --model "
                                      f"{cfg.model}")  # fmt: skip
        if dataset is None:
            from ..data import load_dataset

            # under torchrun one process per machine fetches a missing data set; the others wait for it
            first = not dist.enabled or dist.local_rank == 0
            if not first:
                dist.barrier()
            if cfg.dataset == "folder":
                cfg, dataset = _load_folder(cfg, dist, out)
            else:
                check_in_memory(cfg)
                dataset = load_dataset(cfg.dataset, cfg.data_dir, progress=progress and dist.rank == 0)
            if first:
                dist.barrier()
        trainer = Trainer(cfg, dataset, out, progress=progress, pretrained=pretrained)
        if initial_state is not None and ckpt is None:
            unwrap(trainer.model).load_state_dict(initial_state)
            if trainer.ema_model is not None:
                trainer.ema_model.load_state_dict(initial_state)
        if ckpt is not None:
            trainer.load_state(ckpt)
            if dist.rank == 0:
                print(f"resuming {out} after epoch {trainer.start_epoch}", flush=True)
        elif dist.rank == 0:
            write_json(out / "config.json", {**cfg.to_dict(), "preprocess": trainer.spec.preprocess.to_dict(),
                                             "classes": list(dataset.classes), "data_source": dataset.source,
                                             "torch": torch.__version__, "world_size": dist.world_size})  # fmt: skip
        # CPU training reuses freed activation memory (see freed_memory_kept); glibc's defaults come back after
        with freed_memory_kept(trainer.device.type == "cpu"):
            return trainer.fit(run_callbacks)
    finally:
        dist_utils.teardown()
