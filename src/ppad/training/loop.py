"""The prompt-learning loop: SGD + cosine schedule (or Adam), a loss on synthetic anomalies
(:mod:`ppad.training.losses`), model selection on the validation split, atomic resumable
checkpoints."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ppad.data.batches import REAL, SyntheticBatch, synthesize_batch
from ppad.errors import SettingsError
from ppad.methods.base import PromptDetector
from ppad.methods.memory import MemoryFusion
from ppad.runs import PROMPT_FILES, RunFolder, TrainState
from ppad.synthesis import get_synthesis
from ppad.training.losses import LOSSES

ADAM_BETAS = (0.5, 0.999)  # MediCLIP's

log = logging.getLogger("ppad")


@dataclass(frozen=True)
class TrainSettings:
    """The paper's defaults: k = 64, 100 epochs, SGD 1e-3 / momentum 0.9, cosine, p = 0.5.

    ``loss``: a :data:`LOSSES` name. ``full_batch``: one batch of all shots per epoch (the
    authors' code) instead of ``batch_size``, which still batches validation and scoring.
    ``optimizer``: ``"sgd"`` (momentum, cosine schedule) or ``"adam"`` (betas (0.5, 0.999), a
    constant rate: MediCLIP's).
    """

    shots: int = 64
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    p_anomaly: float = 0.5
    synthesis: str = "sas"
    validation_size: int = 64
    seed: int = 0
    val_every: int = 1  # validate every n-th epoch (and the last); the image prompt makes it costly
    loss: str = "softmax-bce"
    full_batch: bool = False
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        for name in ("shots", "epochs", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.loss not in LOSSES:
            raise SettingsError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise SettingsError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _sgd(parameters: list[torch.nn.Parameter], settings: TrainSettings):
    optimizer = torch.optim.SGD(
        parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)


def _adam(parameters: list[torch.nn.Parameter], settings: TrainSettings):
    optimizer = torch.optim.Adam(parameters, lr=settings.lr, betas=ADAM_BETAS, weight_decay=settings.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


#: name → (parameters, settings) → (optimiser, per-epoch scheduler)
OPTIMIZERS = {"sgd": _sgd, "adam": _adam}


def _validation_metrics(
    model: PromptDetector, validation: SyntheticBatch, batch_size: int, progress: bool
) -> dict[str, float]:
    """The model's own validation numbers on the rows choices are made on
    (:meth:`SyntheticBatch.choice_rows`); ``val_auc`` among them is what picks the epoch. With real
    abnormal films, ``val_auc_synthetic`` beside it: the same measure on the synthetic anomalies,
    for comparison only."""
    metrics = model.validation_metrics(validation.choice_rows(), batch_size, progress)
    synthetic = validation.synthetic_rows()
    if validation.count(REAL) and synthetic.labels.min() < synthetic.labels.max():
        metrics["val_auc_synthetic"] = model.validation_metrics(synthetic, batch_size, progress)["val_auc"]
    return metrics


def validation_label(model: PromptDetector) -> str:
    """The progress bar's name for the AUC validated during training: a memory-fused method is
    validated on its prompt part alone there (its fusion weight is chosen after training)."""
    return "val_auc_prompt" if isinstance(model, MemoryFusion) else "val_auc"


def _train_epoch(model, optimizer, support, task, region_masks, rng, settings: TrainSettings) -> float:
    """One pass over the support set in a seeded order; returns the mean loss. ``region_masks``:
    [R, S, S], or each support film's own [k, R, S, S] (segmented once, before the anomalies)."""
    order = rng.permutation(len(support))
    size = len(order) if settings.full_batch else settings.batch_size
    loss_of = LOSSES[settings.loss]
    model.train()
    losses = []
    for first in range(0, len(order), size):
        chosen = order[first : first + size]
        films_masks = region_masks[chosen] if region_masks.ndim == 4 else region_masks
        batch = synthesize_batch(support[chosen], films_masks, task, rng, settings.p_anomaly)
        loss = loss_of(model, batch.to_model(model.preprocessing, model.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def fit(
    model: PromptDetector,
    support: np.ndarray,
    validation: SyntheticBatch | None,
    settings: TrainSettings,
    run: RunFolder,
    progress: bool = True,
) -> dict:
    """Train the prompts on ``support`` ([k, S, S] normals in [0, 1]); resumes from ``run``.

    Each epoch's randomness is derived from (seed, epoch) alone, so a resumed run draws the
    same regions and anomalies as an uninterrupted one. Returns the history and best epoch.
    """
    model.prepare(support, settings.batch_size, progress)
    if not model.trainable:  # zero-shot, knn: nothing to learn; calibrated and validated once
        calibration = _calibrate(model, validation, settings.batch_size, progress)
        validated = (
            _validation_metrics(model, validation, settings.batch_size, progress) if validation is not None else {}
        )
        for kind in PROMPT_FILES:
            run.save_prompts(model, kind)
        return {"history": [], "best_epoch": 0, "best_val_auc": validated.get("val_auc"), "calibration": calibration}
    if settings.loss not in model.losses:
        raise SettingsError(f"loss {settings.loss!r} does not train this method; it takes: {', '.join(model.losses)}")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = OPTIMIZERS[settings.optimizer](parameters, settings)
    state = run.load_state() or TrainState({}, {}, {}, 0, [], {"epoch": 0, "val_auc": None, "prompts": {}})
    if state.epoch:
        log.info("resuming %s at epoch %d of %d", run.root, state.epoch + 1, settings.epochs)
        run.restore(model, state.prompts)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)

    task = get_synthesis(settings.synthesis, sources=support)
    region_masks = model.region_masks(support)
    bar = tqdm(
        range(state.epoch, settings.epochs),
        desc="training",
        unit="epoch",
        disable=not progress,
        initial=state.epoch,
        total=settings.epochs,
    )
    for epoch in bar:
        rng = np.random.default_rng([settings.seed, epoch])
        lr = optimizer.param_groups[0]["lr"]
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "loss": _train_epoch(model, optimizer, support, task, region_masks, rng, settings),
        }
        scheduler.step()
        model.eval()
        validate = validation is not None and ((epoch + 1) % settings.val_every == 0 or epoch + 1 == settings.epochs)
        if validate:
            record.update(_validation_metrics(model, validation, settings.batch_size, progress))
        state.history.append(record)
        best = state.best
        if validation is None or (validate and (best["val_auc"] is None or record["val_auc"] > best["val_auc"])):
            state.best = {
                "epoch": epoch + 1,
                "val_auc": record.get("val_auc"),
                "prompts": _cpu(model.learned_state_dict()),
            }
            run.save_prompts(model, "best")
        run.save_prompts(model, "last")
        state.prompts, state.epoch = _cpu(model.learned_state_dict()), epoch + 1
        state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
        run.save_state(state)
        shown = {"loss": "loss", "val_auc": validation_label(model)}
        bar.set_postfix({shown[k]: f"{v:.4f}" for k, v in record.items() if k in shown})
    # Checkpoints are written from the training state, so a run warm-started from an identical
    # run's state (a memory-fused variant in the bench) gets its own files; methods with a memory
    # fit its calibration and fusion weight per checkpoint.
    calibration = {}
    for kind, learned in (("last", _cpu(model.learned_state_dict())), ("best", state.best["prompts"])):
        run.restore(model, learned)
        calibration = _calibrate(model, validation, settings.batch_size, progress)
        if calibration or not run.prompts_path(kind).is_file():
            run.save_prompts(model, kind)
    return {
        "history": state.history,
        "best_epoch": state.best["epoch"],
        "best_val_auc": calibration.get("fusion_val_auc", state.best["val_auc"]),  # of the model as saved
        "prompt_val_auc": state.best["val_auc"],
        "calibration": calibration,
    }


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.cpu().clone() for k, v in state.items()}


def _calibrate(model: PromptDetector, validation: SyntheticBatch | None, batch_size: int, progress: bool) -> dict:
    """Fit what the model calibrates on the validation split's :meth:`~SyntheticBatch.choice_rows`;
    without one, on no films (a few-shot memory then calibrates on its support, leave-one-out). A
    fusion weight chosen on validation is recorded with what it was chosen on."""
    model.eval()
    if validation is None:
        size = model.preprocessing.image_size
        return model.calibrate(np.zeros((0, size, size), np.float32), np.zeros(0, int), batch_size, progress)
    rows = validation.choice_rows()
    record = model.calibrate(rows.images, rows.labels.astype(int), batch_size, progress)
    if "fusion_val_aucs" in record:
        record["fusion_chosen_on"] = validation.compared()
    return record
