"""The training loop: d2l's ``train_ch6`` grown into a tool, in the airbench and nanoGPT manner.

Data lives on the training device as uint8 tensors (or streams in from the files); each step takes a batch,
lets the data side preprocess and augment it, runs one optimizer step and keeps its loss and accuracy on the
device (no host sync in the hot loop except when the progress bar redraws). Under ``torchrun`` the model is
wrapped in PyTorch's own DistributedDataParallel; nothing here re-implements communication.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Dataset, ImageSet
from ..data.sampling import epoch_generator, eval_chunks, steps_per_epoch
from ..data.stream import StreamedFolder
from ..errors import UserError
from ..modelfile import unwrap
from ..record import EpochRecord
from ..serve.metrics import Tally
from ..serve.predictor import DEFAULT_BATCH_SIZE, predict_logits
from ..utils.device import device_label
from ..utils.progress import ProgressBar
from .balance import balanced, class_counts, class_weights, counts_line, is_unbalanced
from .callbacks import Callback, default_callbacks
from .config import TrainConfig
from .finetune import set_stage
from .keep import Keeper
from .optim import make_optimizer
from .plan import RunPlan, settle
from .schedule import evaluates_at, lr_at, size_at
from .steps import step_options
from .summary import run_summary
from .tricks import Lookahead, recalibrate_from, scaled_model

# Points per epoch on the within-epoch training curve (steps.csv): enough to draw training error against
# iterations (He et al. Fig. 6), at one tiny on-device snapshot per window and one transfer per epoch.
CURVE_POINTS = 20


@dataclass
class TrainResult:
    """What :func:`resdense.train.train` returns: the run folder (``out_dir``), its ``summary.json`` as a
    dict (``summary``) and every epoch's record as plain data (``history``)."""

    out_dir: Path
    summary: dict
    history: list[dict]  # the epochs' records as plain data (EpochRecord.to_dict), as checkpoints hold them


# an epoch's loss this many times a uniform guess's (ln(classes)) is a run that diverged, finite or not
DIVERGED_FACTOR = 1000


class NonFiniteLoss(UserError):
    pass


class Trainer:
    """Runs a settled :class:`~resdense.train.plan.RunPlan`; ``fit()`` runs it. Built by
    :func:`resdense.train.train`. ``Trainer(cfg, dataset, out_dir)`` settles the plan itself (without taking
    the folder), as before plans existed.

    ``progress``: show progress bars; ``pretrained``: weights already read for the model (else the
    settings' ``weights`` are read).
    """

    def __init__(
        self,
        plan: RunPlan | TrainConfig,
        dataset: Dataset | StreamedFolder | None = None,
        out_dir: Path | None = None,
        progress: bool = True,
        pretrained: object | None = None,
    ):
        if not isinstance(plan, RunPlan):
            plan = settle(
                plan,
                dataset=dataset,
                out=out_dir,
                progress=progress,
                pretrained=pretrained,
                take_folder=False,
            )
        self.plan = plan
        cfg = self.cfg = plan.cfg
        self.run = plan.run
        self.out_dir = plan.run.path
        self.dist = plan.dist
        self.device = plan.device
        self.is_main = self.dist.rank == 0
        self.progress = plan.progress
        self.amp = plan.amp
        self.autocast = self.amp.enabled
        self.dataset = plan.dataset
        data = plan.data
        self.train_set, self.test_set, self.val_set = data.train, data.test, data.val
        self.classes = data.classes
        # "test"/"val": the saved model's metrics (serve.metrics), from saved_model_accuracy's logits
        self.saved_metrics: dict[str, dict] = {}
        self.preprocess, self.augment = data.preprocess, data.augment
        self.spec, self.params, self.macs = plan.spec, plan.params, plan.macs
        self.steps = step_options(cfg, self.augment, len(self.classes))  # None: the plain step (steps.py)
        model = plan.model
        if cfg.sync_bn:
            model = self.dist.convert_sync_bn(model)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(self.device, memory_format=self.memory_format)
        self.model = model
        self.ema_model = copy.deepcopy(model).eval() if cfg.ema > 0 else None
        self.optimizer = make_optimizer(cfg, model)
        self.lookahead = Lookahead(model, cfg.lookahead, cfg.lookahead_alpha) if cfg.lookahead else None
        self.ddp_model = self.dist.wrap(model)
        self.step_model = torch.compile(self.ddp_model) if cfg.compile else self.ddp_model
        # lopsided classes: said (image folders, or whenever unbalanced), and evened out by --balance
        counts = class_counts(self.train_set.labels, len(self.classes))
        if self.is_main and (cfg.dataset == "folder" or cfg.balance != "none" or is_unbalanced(counts)):
            self.say(counts_line(self.classes, counts, cfg.balance))
        self.train_set = balanced(self.train_set, cfg.balance)
        keyed = {"indices": True} if self.steps and self.steps.keyed else {}  # keyed draws need the indices
        self.train_batches = partial(self.train_set.train_batches, **keyed)
        weight = class_weights(counts).to(self.device) if cfg.balance == "loss" else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        self.soft_criterion = nn.CrossEntropyLoss(weight=weight)  # MixUp/CutMix: targets smoothed already
        self.keeper = Keeper.for_run(cfg, self.val_set)

        if cfg.freeze_epochs and self.dist.enabled:  # DDP fixes the trained parameters when it wraps
            raise UserError("--freeze-epochs: not available under torchrun yet; use --freeze backbone")
        if cfg.freeze_epochs and self.is_main:
            self.say(
                f"--freeze-epochs {cfg.freeze_epochs}: the classifier alone trains first, then the whole net "
                f"at {cfg.unfreeze_lr_mult:g}x the learning rate"
            )
        self.steps_per_epoch = steps_per_epoch(len(self.train_set), cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.history: list[EpochRecord] = []
        self.start_epoch = 0
        self.elapsed = 0.0  # training seconds before this process (resumed runs)

    # -- state ------------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else None,
            "history": [r.to_dict() for r in self.history],  # plain data: a checkpoint loads weights_only
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "keeper": self.keeper.state_dict() if self.keeper is not None else None,
        }

    def load_state(self, ckpt: dict) -> None:
        try:
            unwrap(self.model).load_state_dict(ckpt["model"])
            if self.ema_model is not None and ckpt.get("ema") is not None:
                self.ema_model.load_state_dict(ckpt["ema"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.lookahead is not None and ckpt.get("lookahead") is not None:
                self.lookahead.load_state_dict(ckpt["lookahead"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
            text = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise UserError(
                f"--resume {self.out_dir}: its checkpoint does not fit the run's model ({text})"
            ) from None
        self.history = [EpochRecord.from_dict(r) for r in ckpt["history"]]  # checked by load_checkpoint
        self.start_epoch = int(ckpt["epoch"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        if self.keeper is not None and ckpt.get("keeper") is not None:
            self.keeper.load_state_dict(ckpt["keeper"])

    # -- the loop ---------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> EpochRecord:
        """One epoch of training (``epoch`` 0-based): its record, not yet scored."""
        cfg, dev = self.cfg, self.device
        model = self.step_model
        stage_mult = set_stage(unwrap(self.model), cfg, epoch)  # --freeze-epochs: frozen body, then all
        model.train()
        # Every random choice of the epoch derives from (seed, epoch): a resumed run replays it exactly.
        torch.manual_seed(cfg.seed * 7919 + epoch)
        gen = epoch_generator(cfg.seed, epoch, stream=1 + self.dist.rank, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        bar = ProgressBar(self.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", enabled=self.progress)
        t0 = time.perf_counter()
        steps = self.steps
        batches = self.train_batches(
            cfg.batch_size, seed=cfg.seed, epoch=epoch, rank=self.dist.rank, world_size=self.dist.world_size
        )
        full = self.preprocess.input_size
        side = size_at(cfg, epoch, full)
        window = max(1, self.steps_per_epoch // CURVE_POINTS)
        marks: list[tuple[int, float, torch.Tensor, int]] = []  # (step done, lr, running sums, images seen)
        for i, (xb, yb, *idx) in enumerate(batches):
            step = epoch * self.steps_per_epoch + i
            lr = lr_at(cfg, step, self.total_steps, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0) * stage_mult
            # a no-op for in-memory batches; streamed ones arrive as uint8 on the host
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if steps is None:  # preprocessed and augmented as the data side says
                x, target = self.augment(xb, gen, epoch), yb
            else:
                x, target = steps.inputs(self.augment, xb, yb, idx[0] if idx else None, gen, epoch)
            if side != full:  # after augmentation, so crops and erasing keep their meaning in pixels
                x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
            x = x.contiguous(memory_format=self.memory_format)
            self.optimizer.zero_grad(set_to_none=True)
            if steps is None:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.autocast):
                    logits = model(x)
                    loss = self.loss(logits, target)
                loss.backward()
            else:
                logits, loss = steps.backward(model, x, target, self.loss, dev.type, self.autocast)
            self.optimizer.step()
            if self.lookahead is not None:
                self.lookahead.step(step)
            if self.ema_model is not None:
                self.update_ema(step)
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.argmax(1) == yb).sum()
            seen += yb.shape[0]
            if (i + 1) % window == 0:  # a snapshot on the device: no host sync in the loop
                marks.append((step + 1, lr, torch.stack([loss_sum, correct.to(loss_sum.dtype)]), seen))
            if bar.due():
                secs = time.perf_counter() - t0
                bar.update(
                    i + 1,
                    f"loss {loss_sum.item() / seen:.3f} acc {correct.item() / seen:.3f} "
                    f"{seen * self.dist.world_size / secs:,.0f} img/s",
                )
        bar.close()
        if self.lookahead is not None and epoch + 1 == cfg.epochs:
            self.lookahead.finish()  # the run ends on the slow weights
        if cfg.bn_recalibrate and epoch + 1 == cfg.epochs:
            self.recalibrate_bn()  # counted in the epoch's seconds: a run's time includes it
        totals = self.dist.all_reduce_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype)]))
        seen_all = seen * self.dist.world_size
        loss_avg = totals[0].item() / seen_all
        # diverged: not a number, or grown by orders of magnitude past a uniform guess's loss, ln(classes)
        # (a run whose loss reached 1e19 once ended "done" with its model saved, issue 37)
        if not math.isfinite(loss_avg) or loss_avg > DIVERGED_FACTOR * math.log(max(2, len(self.classes))):
            kept = (
                f"the last good checkpoint (epoch {epoch}) is kept in {self.out_dir}"
                if epoch > 0
                else "no checkpoint was written"
            )
            raise NonFiniteLoss(
                f"the training loss became {loss_avg:.4g} in epoch {epoch + 1} (diverged); stopped, {kept} "
                "(try a lower --lr)"
            )
        secs = time.perf_counter() - t0
        return EpochRecord(
            epoch + 1,
            loss_avg,
            totals[1].item() / seen_all,
            lr,
            secs,
            seen_all / secs,
            self.curve(marks, totals, seen, step, lr),
        )

    def curve(self, marks: list, totals: torch.Tensor, seen: int, last_step: int, lr: float) -> tuple:
        """``[step, loss, acc, lr]`` for each window of the epoch (the last one may be shorter): the running
        sums differenced between snapshots, summed over the processes; the epoch's totals close the last."""
        if marks and marks[-1][0] == last_step + 1:
            marks = marks[:-1]
        sums = (
            self.dist.all_reduce_sum(torch.stack([m[2] for m in marks])).cpu() if marks else torch.zeros(0, 2)
        )
        sums = torch.cat([sums.to(totals.dtype), totals.reshape(1, 2).cpu()])
        points = [(m[0], m[1], m[3]) for m in marks] + [(last_step + 1, lr, seen)]
        rows, before, n_before = [], torch.zeros(2, dtype=sums.dtype), 0
        for (step, step_lr, n), now in zip(points, sums):
            delta = (now - before) / max(1, (n - n_before) * self.dist.world_size)
            rows.append((step, delta[0].item(), delta[1].item(), step_lr))
            before, n_before = now, n
        return tuple(rows)

    def recalibrate_bn(self) -> None:
        """--bn-recalibrate N (train/tricks.py): the evaluated model's batch-norm statistics from N training
        images spread over the split, in batches of a training step's size, fp32. Every process reads the
        same images, so all end with the same statistics without communicating."""

        def prepare(xb: torch.Tensor) -> torch.Tensor:
            xb = self.preprocess(xb.to(self.device, non_blocking=True))
            return xb.contiguous(memory_format=self.memory_format)

        recalibrate_from(
            self.eval_model(),
            self.train_set,
            self.cfg.bn_recalibrate,
            self.cfg.batch_size // self.dist.world_size,
            prepare,
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss, in fp32, of the logits times ``logit_scale`` (train/tricks.py)."""
        scale = self.cfg.logit_scale
        criterion = self.criterion if labels.ndim == 1 else self.soft_criterion  # soft: MixUp/CutMix
        return criterion(logits.float() * scale if scale != 1.0 else logits.float(), labels)

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

    def served_model(self) -> nn.Module:
        """What the run saves: the evaluated model, with ``logit_scale`` folded into its classifier."""
        return scaled_model(self.eval_model(), self.cfg.logit_scale)

    def evaluate(self, final: bool = True, data: ImageSet | None = None) -> float:
        """Test accuracy (or on ``data``: the validation split); under torchrun each process scores a share
        of rank 0's model and all agree on the sum.

        ``final``: the run's result, the model as it is saved (:meth:`served_model`), scored as ``resdense
        evaluate`` scores its file: in fp32, through its preprocessing and test-time views, so the two agree
        exactly whatever precision trained it. Otherwise a per-epoch figure for the curves: the training
        model in the training precision (bf16 under autocast), without the test-time views, which double an
        evaluation's cost.
        """
        model = self.eval_model()
        self.dist.broadcast_buffers(model)  # score rank 0's model (the saved one) on every rank
        data = self.test_set if data is None else data
        if final:
            return self.saved_model_accuracy(data)
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bs = self.cfg.eval_batch_size
        for xb, yb in self._scoring(data, bs):
            logits = predict_logits(
                model,
                xb,
                self.preprocess,
                batch_size=bs,
                channels_last=self.cfg.channels_last,
                autocast=self.autocast,
            )
            correct += (logits.argmax(1) == yb).sum()
        total = self.dist.all_reduce_sum(correct.double())
        return total.item() / len(data)

    def saved_model_accuracy(self, data) -> float:
        """Accuracy of the weights as saved, as ``resdense evaluate`` computes it from the model file: a copy
        in eval mode with its weights in PyTorch's default layout (as a loaded file has them), fp32 (no
        autocast), the spec's test-time views, in the predictors' batches of ``DEFAULT_BATCH_SIZE`` within
        chunks of ``eval_batch_size`` (the default, 1024, a multiple: each batch then holds the images
        evaluate's does). Under torchrun each process scores every ``world_size``-th chunk."""
        served = copy.deepcopy(self.served_model()).to(memory_format=torch.contiguous_format).eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        tally = Tally.empty(len(self.spec.classes), self.device)  # the summary's metrics, from these logits
        for xb, yb in self._scoring(data, self.cfg.eval_batch_size):
            logits = predict_logits(
                served, xb, self.preprocess, tta_flip=self.spec.tta_flip, batch_size=DEFAULT_BATCH_SIZE
            )
            correct += (logits.argmax(1) == yb).sum()
            tally.add(logits, yb)
        total = self.dist.all_reduce_sum(correct.double())
        split = "val" if data is self.val_set else "test"
        self.saved_metrics[split] = tally.reduced(self.dist.all_reduce_sum).metrics(list(self.spec.classes))
        return total.item() / len(data)

    def _scoring(self, data, batch_size: int):
        """This process's share of ``data`` in batches on the device, under a progress bar (scoring 10,000
        images, twice with the flip, can take as long as a short run's training)."""
        rank, world = self.dist.rank, self.dist.world_size
        chunks = sum(1 for _ in eval_chunks(len(data), batch_size, rank, world))
        bar = ProgressBar(chunks, "scoring", enabled=self.progress)
        for i, (xb, yb) in enumerate(data.eval_batches(batch_size, rank, world), 1):
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            bar.update(i)
        bar.close()

    def fit(self, callbacks: list[Callback] | None = None) -> TrainResult:
        """Train from ``start_epoch`` on. ``callbacks`` (default: the run's own, see
        :func:`~resdense.train.callbacks.default_callbacks`) run on the main process only."""
        cfg = self.cfg
        if callbacks is None:
            callbacks = default_callbacks(progress=self.progress, tensorboard=cfg.tensorboard)
        callbacks = list(callbacks) if self.is_main else []
        for cb in callbacks:
            cb.on_train_start(self)
        final_scores = None  # (test, validation) accuracy of the saved model
        keeper = self.keeper
        for epoch in range(self.start_epoch, 0 if keeper is not None and keeper.stopped else cfg.epochs):
            t0 = time.perf_counter()
            trained = self.train_epoch(epoch)
            test_acc = val_acc = None
            if evaluates_at(cfg, epoch, self.preprocess.input_size):
                final = epoch + 1 == cfg.epochs and keeper is None  # a keeper scores the kept weights last
                test_acc = self.evaluate(final)
                if self.val_set is not None:
                    val_acc = self.evaluate(final, self.val_set)
                if final:
                    final_scores = test_acc, val_acc
            row = replace(trained, test_acc=test_acc, val_acc=val_acc)
            self.elapsed += time.perf_counter() - t0
            self.history.append(row)
            stop = keeper is not None and keeper.update(self.eval_model(), row)  # before the checkpoint
            for cb in callbacks:
                cb.on_epoch_end(self, row)
            if stop:
                break
        if keeper is not None:  # the kept weights are what is saved and scored
            keeper.restore(self.eval_model())
        # no epoch left to train (resumed after its last checkpoint): the saved model is scored now, since a
        # checkpoint written by an earlier version holds the training precision's last score
        if final_scores is None:
            val = self.evaluate(True, self.val_set) if self.val_set is not None else None
            final_scores = self.evaluate(True), val
        summary = self.summary(*final_scores)
        for cb in callbacks:
            cb.on_train_end(self, summary)
        self.dist.barrier()
        return TrainResult(self.out_dir, summary, [r.to_dict() for r in self.history])

    def summary(self, test_acc: float, val_acc: float | None = None) -> dict:
        """The run's result (``train.summary.run_summary``)."""
        return run_summary(self, test_acc, val_acc)

    def device_label(self) -> str:
        return device_label(self.device, self.dist.world_size)

    def say(self, msg: str) -> None:
        print(msg, flush=True)
