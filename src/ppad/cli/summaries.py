"""The lines ``ppad train`` and ``ppad demo`` print about a finished run: what validation chose and
what it means for the scores (light: no torch)."""

from __future__ import annotations


def fusion_line(weight: float, chosen_on: str | None = None) -> str:
    """What a ``<method>+knn`` run's fusion weight ``w`` (the prompt score's share) means, and what
    it was chosen on (the calibration record's ``fusion_chosen_on``; ``fixed``: nothing to choose on)."""
    if weight <= 0:
        meaning = "the prompt part gets weight 0: scores come from the memory alone"
    elif weight >= 1:
        meaning = "the memory gets weight 0: scores come from the prompts alone"
    else:
        meaning = f"score = {weight:g} × prompt score + {1 - weight:g} × memory"
    if chosen_on == "fixed":
        how = "fixed (no validation anomalies to choose it on)"
    elif chosen_on:
        how = f"chosen on {chosen_on} (it leaves 0.5 only for a gain beyond noise)"
    else:
        how = "chosen on validation"
    return f"fusion weight {weight:g} {how} — {meaning}"


def pixel_text(result: dict) -> str:
    """For a method selected on image and pixel AUROC together (MediCLIP), what the mean was of."""
    record = next((h for h in result.get("history", []) if h.get("epoch") == result.get("best_epoch")), {})
    if "val_pixel_auc" not in record:
        return ""
    return f" = mean of image {record['val_image_auc']:.3f} and pixel {record['val_pixel_auc']:.3f}"


def validation_text(result: dict) -> str:
    """The validation AUC of the model as saved, named for what it measured.

    A fused run reports the fused score's AUC and, beside it, the prompt part's (what the
    training progress bar shows as ``val_auc_prompt``)."""
    best = result.get("best_val_auc")
    if best is None:
        return "no validation split"
    if "fusion_weight" not in result.get("calibration", {}):
        return f"validation AUC {best:.3f}{pixel_text(result)}"
    prompt = result.get("prompt_val_auc")
    prompt_text = f"; prompts alone {prompt:.3f}{pixel_text(result)}" if prompt is not None else ""
    return f"validation AUC {best:.3f} (fused score{prompt_text})"


def training_summary(out: str, method: str, result: dict, prompts: str) -> list[str]:
    """The lines ``ppad train`` ends with: what was kept, on what validation, and the fusion."""
    validation = validation_text(result)
    if not result["history"]:
        lines = [f"{out}: {method} has nothing to train; {validation}; ready for score/evaluate"]
    else:
        kept = f"epoch {result['best_epoch']}" if result["best_val_auc"] is not None else "the last epoch"
        lines = [f"trained {out}: kept {kept}; {validation}; prompts in {prompts}"]
    calibration = result.get("calibration", {})
    weight = calibration.get("fusion_weight")
    return lines if weight is None else [*lines, fusion_line(weight, calibration.get("fusion_chosen_on"))]
