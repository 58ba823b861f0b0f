"""The JSON the API answers, as pydantic models: they validate responses and document them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ScoreResult(BaseModel):
    filename: str = Field(description="The upload's file name, as sent (for the caller's records only).")
    format: Literal["png", "jpeg", "dicom"]
    width: int = Field(description="Film width in pixels, as decoded.")
    height: int
    score: float = Field(description="Anomaly score in [0, 1] (PPAD's rule over the views).")
    threshold: float = Field(description="The run's decision threshold: score > threshold is 'abnormal'.")
    decision: Literal["normal", "abnormal"]
    top_view: str = Field(
        description="What drove the score: the view with the highest abnormal probability; for a fused "
        "<method>+knn score, 'memory' when the memory's weighted part is the larger, else the prompt view."
    )
    views: dict[str, float] = Field(description="Abnormal probability at each view, in the run's view order.")
    lung_fields: str | None = Field(
        description="Whether the film's lung fields were used as found ('trusted') or the image halves instead "
        "('halves: <reason>', as `ppad lungs` says), when the scores or the map use them; null otherwise."
    )
    overlay_png: str | None = Field(
        description="Base64 PNG of the anomaly map over the film, with the views and score; null with map=false."
    )
    elapsed_ms: float = Field(description="Time from the request's arrival to its answer, queueing included.")


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. upload_too_large, unsupported_image_type, busy.")
    detail: str = Field(description="What is wrong, for people.")
    filename: str | None = Field(None, description="The upload it concerns, when one was received.")


class Health(BaseModel):
    status: Literal["ok"]
    device: str
    admitted: int = Field(description="Score requests running or waiting now.")
    capacity: int = Field(description="Score requests admitted at once; more are answered 503.")
    uptime_s: float


class ModelInfo(BaseModel):
    run: str
    checkpoint: str
    method: str
    backbone: dict[str, str] = Field(description="source, architecture and SHA-256 fingerprint of the weights.")
    views: list[str]
    threshold: float
    eta: float
    fusion_weight: float | None = Field(
        description="Share w of the prompt score in a <method>+knn score (1 − w is the memory's); null if not fused."
    )
    image_size: int
    device: str
    limits: dict[str, Any]
    ppad_version: str
    config: dict[str, Any] = Field(description="The run's config.json.")
