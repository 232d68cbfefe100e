"""What both backends' models share, as plain Python and numpy: names, constants, arithmetic.

``names`` (the model names and ``ModelError``), ``spleeter_unet`` (the U-Net's numbers and TF's
"same" padding and cropping), ``shake_shake`` (stage constants and the parity draws). The model
packages ``jax_impl.models`` and ``torch_ref.models`` import these; this package imports numpy and
no dataset code.

May import: no other subpackage; only the top-level modules (``errors``, ``cli``, ``registry``,
``paths``, ``backends``, ``destinations``); never a backend.
"""
