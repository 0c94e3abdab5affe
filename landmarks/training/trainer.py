"""The training loop: AdamW, warmup + cosine, mixed precision on a GPU, gradient clipping,
checkpoints every epoch (and every N steps), resume after a kill, a progress bar and a CSV log.

Everything random is a function of (seed, epoch, step): the batches, each photo's augmentation, the
initial weights of new layers. A run killed and resumed from its last checkpoint therefore follows
exactly the path an uninterrupted run would have taken.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from landmarks.models import create_model
from landmarks.training.checkpoints import LAST, epoch_file, read_checkpoint, save_atomically
from landmarks.training.config import TrainConfig
from landmarks.training.data import PhotoDataset, SeededBatches, TrainingSet, TrainTransform
from landmarks.training.losses import build_loss
from landmarks.training.samplers import MPerClassBatchSampler
from landmarks.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

LOG_FILE = "log.csv"
LOG_FIELDS = ("epoch", "step", "global_step", "lr", "loss", "elapsed_s")
# Settings that change speed but not the result: a run may resume with them changed.
RESUMABLE_CHANGES = {("data", "workers")}


class ResumeError(ValueError):
    """The run directory holds a checkpoint of a different configuration."""


@dataclass
class Position:
    epoch: int = 0  # the epoch in progress (0-based); == epochs when training is done
    step: int = 0  # the next step within that epoch
    global_step: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    partial_epoch_seconds: float = 0.0  # time already spent in the epoch in progress


def build_model(config: TrainConfig) -> nn.Module:
    section = config.model
    return create_model(
        section.backbone,
        pretrained=section.pretrained,
        weights_file=section.weights_file,
        image_size=section.image_size,
        embedding_dim=section.embedding_dim,
        gem_p=section.gem_p,
    )


def freeze_before(model: nn.Module, prefix: str) -> int:
    """Freeze every parameter registered before the first one named `prefix...`; returns how many."""
    names = [name for name, _ in model.named_parameters()]
    if not any(name.startswith(prefix) for name in names):
        raise ValueError(
            f"model.train_from={prefix!r} matches no parameter; parameter names look like {names[0]!r} ... {names[-1]!r}"
        )
    frozen = 0
    for name, parameter in model.named_parameters():
        if name.startswith(prefix):
            break
        parameter.requires_grad_(False)
        frozen += 1
    return frozen


def _param_groups(model: nn.Module, loss_fn: nn.Module, optim) -> list[dict]:
    """AdamW groups. New layers (projection head, ArcFace's class centres) start from noise and must
    move faster than the pretrained backbone; every architecture keeps its new layers under `head.`
    (DOLG's local branch and fusion, DELF's attention and projection). Weight decay on weight
    matrices and kernels only: decaying biases, norms or GeM's p only hurts."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = (optim.head_lr or 10 * optim.lr) if name.startswith("head.") else optim.lr
        groups.setdefault((lr, optim.weight_decay if parameter.ndim >= 2 else 0.0), []).append(parameter)
    for parameter in loss_fn.parameters():
        if parameter.requires_grad:
            groups.setdefault((optim.loss_lr or 10 * optim.lr, 0.0), []).append(parameter)
    return [
        {"params": params, "base_lr": lr, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()
    ]


def _config_differences(saved: dict, current: dict, prefix: tuple[str, ...] = ()) -> list[str]:
    differences = []
    for key in sorted(set(saved) | set(current)):
        path = (*prefix, key)
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and path != ("loss", "params"):
            differences.extend(_config_differences(a, b, path))
        elif a != b and path not in RESUMABLE_CHANGES:
            differences.append(".".join(path))
    return differences


class Trainer:
    def __init__(self, config: TrainConfig, *, device: str | torch.device | None = None, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.run_dir = config.run_path
        self.training_set = TrainingSet.from_gallery(
            Path(config.data.root), landmarks=config.data.landmarks, min_photos=config.data.min_photos
        )
        if not self.training_set.classes:
            raise ValueError(
                f"no landmark in {config.data.root} has {config.data.min_photos} or more photos to train on"
            )

        torch.manual_seed(config.seed)  # new layers (projection head, class centres) start the same every run
        self.model = build_model(config)
        if config.model.train_from:
            frozen = freeze_before(self.model, config.model.train_from)
            log.info("froze %d parameter tensors before %s", frozen, config.model.train_from)
        self.loss_fn = build_loss(
            config.loss.name,
            config.loss.params,
            embedding_dim=self.model.output_dim,
            num_classes=len(self.training_set.classes),
        )
        self.channels_last = not self._is_transformer()
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.loss_fn.to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, self.loss_fn, config.optim))

        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.sampler = MPerClassBatchSampler(
            self.training_set.labels,
            min(config.data.classes_per_batch, len(self.training_set.classes)),
            config.data.samples_per_class,
            batches_per_epoch=config.data.batches_per_epoch,
            seed=config.seed,
        )
        train_size = config.data.image_size or self.model.config.image_size
        self.dataset = PhotoDataset(
            self.training_set,
            TrainTransform(replace(self.model.config, image_size=train_size), augment=config.data.augment),
        )
        self.total_steps = config.optim.epochs * len(self.sampler)
        self.position = Position()

    def _is_transformer(self) -> bool:
        return getattr(self.model.backbone, "num_prefix_tokens", None) is not None

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or not self.config.optim.amp:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # --- checkpoints --------------------------------------------------------------------------------
    def _model_payload(self) -> dict:
        return {
            "model_config": self.model.config.to_dict(),
            "state_dict": {name: tensor.contiguous() for name, tensor in self.model.state_dict().items()},
            "train_config": self.config.to_dict(),
            "classes": self.training_set.classes,
            "epoch_seconds": list(self.position.epoch_seconds),
        }

    def save_last(self) -> Path:
        payload = self._model_payload()
        payload.update(
            loss=self.loss_fn.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            epoch=self.position.epoch,
            step=self.position.step,
            global_step=self.position.global_step,
            partial_epoch_seconds=self.position.partial_epoch_seconds,
        )
        return save_atomically(payload, self.run_dir / LAST)

    def resume(self) -> bool:
        """Load RUN_DIR/last.pt if there is one; False when starting from scratch."""
        path = self.run_dir / LAST
        if not path.exists():
            return False
        payload = read_checkpoint(path)
        differences = _config_differences(payload.get("train_config", {}), self.config.to_dict())
        if differences:
            raise ResumeError(
                f"{path} was made with a different configuration ({', '.join(differences)} differ). "
                "Start over with --fresh, or give this configuration another run_dir."
            )
        if payload.get("classes") != self.training_set.classes:
            raise ResumeError(
                f"{path} was trained on other landmarks than {self.config.data.root} now holds; start over with --fresh"
            )
        self.model.load_state_dict(payload["state_dict"])
        self.loss_fn.load_state_dict(payload["loss"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.position = Position(
            epoch=payload["epoch"],
            step=payload["step"],
            global_step=payload["global_step"],
            epoch_seconds=list(payload["epoch_seconds"]),
            partial_epoch_seconds=payload["partial_epoch_seconds"],
        )
        self._truncate_log(self.position.global_step)
        log.info("resumed from %s at epoch %d step %d", path, self.position.epoch + 1, self.position.step)
        return True

    # --- log --------------------------------------------------------------------------------------
    def _truncate_log(self, global_step: int) -> None:
        """Drop the rows a killed run logged after its last checkpoint: they are about to be redone."""
        path = self.run_dir / LOG_FILE
        if not path.exists():
            return
        with path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["global_step"]) <= global_step]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def _open_log(self):
        path = self.run_dir / LOG_FILE
        new = not path.exists() or path.stat().st_size == 0
        handle = path.open("a", newline="")
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        return handle, writer

    # --- training ---------------------------------------------------------------------------------
    def _set_train_mode(self) -> None:
        self.model.train()
        if self.config.optim.freeze_batchnorm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _set_lr(self) -> float:
        optim = self.config.optim
        factor = warmup_cosine(
            self.position.global_step,
            total_steps=self.total_steps,
            warmup_steps=optim.warmup_steps,
            min_ratio=optim.min_lr_ratio,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return optim.lr * factor  # the backbone's rate, for the log

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            embeddings = self.model(images)
        # Losses in float32: ROADMAP's τ = 0.01 sigmoid and ArcFace's scaled logits overflow half precision.
        loss = self.loss_fn(embeddings.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {self.position.global_step}; lower optim.lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.optim.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def fit(self) -> Path:
        """Train to the configured number of epochs from wherever the run stands; returns last.pt."""
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "training %s with %s on %d photos of %d landmarks: %d batches of %d per epoch, %s",
            config.model.backbone,
            config.loss.name,
            len(self.training_set.photos),
            len(self.training_set.classes),
            len(self.sampler),
            self.sampler.batch_size,
            self.device,
        )
        handle, writer = self._open_log()
        run_started = time.perf_counter()
        try:
            while self.position.epoch < config.optim.epochs:
                self._run_epoch(writer, handle, run_started)
        finally:
            handle.close()
        return self.run_dir / LAST

    def _run_epoch(self, writer, handle, run_started: float) -> None:
        config, position = self.config, self.position
        batches = SeededBatches(self.sampler, seed=config.seed, epoch=position.epoch, start_step=position.step)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=config.data.workers,
            pin_memory=self.device.type == "cuda",
        )
        self._set_train_mode()
        bar = tqdm(
            total=len(self.sampler),
            initial=position.step,
            desc=f"epoch {position.epoch + 1}/{config.optim.epochs}",
            unit="batch",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        started = time.perf_counter() - position.partial_epoch_seconds
        for images, labels in loader:
            lr = self._set_lr()
            loss = self._step(images, labels)
            position.step += 1
            position.global_step += 1
            position.partial_epoch_seconds = time.perf_counter() - started
            writer.writerow(
                {
                    "epoch": position.epoch + 1,
                    "step": position.step,
                    "global_step": position.global_step,
                    "lr": f"{lr:.3e}",
                    "loss": f"{loss:.5f}",
                    "elapsed_s": f"{time.perf_counter() - run_started:.1f}",
                }
            )
            handle.flush()
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            bar.update(1)
            every = config.checkpoint_every_steps
            if every and position.global_step % every == 0 and position.step < len(self.sampler):
                self.save_last()
        bar.close()
        position.epoch_seconds.append(time.perf_counter() - started)
        position.epoch += 1
        position.step = 0
        position.partial_epoch_seconds = 0.0
        save_atomically(self._model_payload(), self.run_dir / epoch_file(position.epoch))
        self.save_last()
        log.info("epoch %d done in %.1f s", position.epoch, position.epoch_seconds[-1])


def train(config: TrainConfig, *, device: str | None = None, fresh: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the run CONFIG describes; returns the path of its last checkpoint."""
    trainer = Trainer(config, device=device, progress=progress)
    if fresh:
        for stale in [trainer.run_dir / LAST, trainer.run_dir / LOG_FILE, *trainer.run_dir.glob("epoch-*.pt")]:
            stale.unlink(missing_ok=True)
    else:
        trainer.resume()
    return trainer.fit()
