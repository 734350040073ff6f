"""What a training run is configured with: embedded in the config of every pass that trains."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Fine-tuning settings (pydantic, so passes embed them and recipes validate them)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=0, description="Epochs of fine-tuning after the (last) pruning step.")
    batch_size: int = Field(64, gt=0, description="Training samples per optimizer step.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "adamw", description="sgd (momentum 0.9, nesterov), adam, or adamw (decoupled weight decay)."
    )
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="L2 / decoupled weight decay.")
    schedule: Literal["constant", "cosine", "step"] = Field(
        "cosine", description="Learning-rate schedule over the epochs: constant, cosine decay, or step (x0.1 at 2/3)."
    )
    early_stopping: int | None = Field(
        None, gt=0, description="Stop after this many epochs without a better eval accuracy (default: never)."
    )
    keep_best: bool = Field(
        True, description="End with the weights of the epoch with the best eval accuracy, not the last epoch's."
    )
    hflip: bool = Field(False, description="Augment: random horizontal flips of image inputs (rank-4 NCHW).")
    crop_padding: int = Field(0, ge=0, description="Augment: random crops after zero-padding by this many pixels.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
