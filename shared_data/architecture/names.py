"""The one list of model names both backends register (DESIGN.md section 2).

Parity tests iterate over this tuple; each backend's registry must hold exactly these names.
"""

MODEL_NAMES: tuple[str, ...] = (
    "resnet18",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "densenet201",
    "shake_shake26_2x96d",
    "shake_shake_resnext26",
    "cbam_resnet18",
    "lstm",
)
