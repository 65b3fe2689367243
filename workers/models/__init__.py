"""Model registry and the Shake-Shake family (``create_model("shake_shake_26_2x64d")``)."""

from .registry import create_model, list_models, register_model
from .shake_shake import ShakeShake, ShakeShakeBlock, count_parameters, shake_shake_image

__all__ = [
    "ShakeShake",
    "ShakeShakeBlock",
    "count_parameters",
    "create_model",
    "list_models",
    "register_model",
    "shake_shake_image",
]
