"""Callbacks that report each epoch: Keras (`KerasProgress`) and PyTorch Lightning
(`LightningProgress`). Each exists only where its library is installed:

    from deep_platform.progress.callbacks import KerasProgress
    model.fit(x, y, epochs=15, callbacks=[KerasProgress()])
"""

from __future__ import annotations

import importlib
import numbers
from typing import Any

from .client import report


def _numbers(values: Any) -> dict[str, float]:
    """The numeric entries of Keras' logs or Lightning's callback_metrics (tensors included)."""
    found: dict[str, float] = {}
    for name, value in dict(values or {}).items():
        if hasattr(value, "item") and callable(value.item):
            try:
                value = value.item()
            except (TypeError, ValueError, RuntimeError):  # a tensor of more than one value
                continue
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            found[str(name)] = float(value)
    return found


def _first_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


_keras = _first_module("keras", "tensorflow.keras")
_lightning = _first_module("lightning.pytorch", "pytorch_lightning")
__all__: list[str] = []

if _keras is not None:

    class KerasProgress(_keras.callbacks.Callback):  # type: ignore[name-defined]
        """Reports epochs done of `epochs` and the epoch's logs (loss, metrics)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            total = (getattr(self, "params", None) or {}).get("epochs")
            report(epoch=epoch + 1, total_epochs=total, metrics=_numbers(logs))

    __all__.append("KerasProgress")

if _lightning is not None:

    class LightningProgress(_lightning.Callback):  # type: ignore[name-defined]
        """Reports epochs done of `max_epochs` and the trainer's callback metrics."""

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
            report(
                epoch=trainer.current_epoch + 1,
                total_epochs=total,
                step=trainer.global_step,
                metrics=_numbers(trainer.callback_metrics),
            )

    __all__.append("LightningProgress")
