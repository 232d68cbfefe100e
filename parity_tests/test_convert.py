"""torch <-> Flax NNX weight conversion (``jax_impl/convert.py``).

* torch -> JAX -> torch is bitwise exact for every registered model, and torch loads the result
  with ``strict=True``;
* a state dict with an extra key, a missing key and a wrong shape fails once, listing all three;
* the transposed-conv rule (the Spleeter U-Net's ``ConvTranspose2d``) gives torch's outputs;
* ``num_batches_tracked`` is dropped on import and exported as 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import torch_ref.models as torch_models
from jax_impl.convert import (
    ConversionError,
    export_torch_state,
    jax_to_torch,
    load_torch_state,
    torch_to_jax,
)
from jax_impl.models.layers import BatchNorm, conv_transpose2d, linear
from shared_data.architecture.names import MODEL_NAMES
from shared_data.errors import UserError

NUM_CLASSES = 7  # not the parity suite's 10, so a hard-coded head size would show


def _numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_is_exact(name: str) -> None:
    torch.manual_seed(1)
    torch_model = torch_models.create_model(name, NUM_CLASSES)
    with torch.no_grad():  # non-trivial BN statistics, so mean/var mix-ups would show
        for k, v in torch_model.state_dict().items():
            if k.endswith(("running_mean", "running_var")):
                v.uniform_(0.5, 1.5)
    state = _numpy_state(torch_model)
    back = jax_to_torch(torch_to_jax(name, state, NUM_CLASSES))
    assert back.keys() == state.keys()
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_torch_to_jax_gives_an_eval_mode_model_with_the_weights() -> None:
    state = _numpy_state(torch_models.create_model("resnet18", NUM_CLASSES))
    model = torch_to_jax("resnet18", state, NUM_CLASSES)
    assert model.bn1.use_running_average is True
    # OIHW -> HWIO, and (out, in) -> (in, out)
    np.testing.assert_array_equal(
        model.conv1.kernel[...], state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(model.fc.kernel[...], state["fc.weight"].T)
    np.testing.assert_array_equal(model.bn1.var[...], state["bn1.running_var"])
    assert model(jnp.zeros((1, 32, 32, 1))).shape == (1, NUM_CLASSES)


def test_the_jax_model_does_not_alias_the_torch_tensors() -> None:
    """Updating the torch model in place after conversion leaves the JAX model as it was."""
    torch_model = torch_models.create_model("resnet18", NUM_CLASSES)
    # .numpy() shares memory with the tensors: exactly what a caller passing torch state does.
    shared = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    before = shared["fc.bias"].copy()
    model = torch_to_jax("resnet18", shared, NUM_CLASSES)
    with torch.no_grad():
        torch_model.fc.bias.add_(1.0)
        torch_model.bn1.running_var.mul_(3.0)
    np.testing.assert_array_equal(np.asarray(model.fc.bias[...]), before)
    np.testing.assert_array_equal(
        np.asarray(model.bn1.var[...]), torch_model.bn1.running_var.numpy() / 3.0
    )


def test_every_problem_is_listed_in_one_error() -> None:
    state = _numpy_state(torch_models.create_model("resnet18", NUM_CLASSES))
    state["layer9.0.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)  # extra
    del state["layer2.1.bn2.running_var"]  # missing
    state["fc.weight"] = np.zeros((NUM_CLASSES + 1, 512), np.float32)  # wrong shape
    with pytest.raises(ConversionError) as info:
        torch_to_jax("resnet18", state, NUM_CLASSES)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "layer9.0.conv1.weight" in message
    assert "layer2.1.bn2.running_var" in message
    assert "fc.weight" in message and "(8, 512)" in message
    assert "3 problem(s)" in message


def test_an_nnx_variable_without_torch_key_is_reported() -> None:
    state = _numpy_state(torch_models.create_model("resnet18", NUM_CLASSES))
    state = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    with pytest.raises(ConversionError, match=r"layer4\.1\.conv2\.weight"):
        torch_to_jax("resnet18", state, NUM_CLASSES)


def test_num_batches_tracked_is_dropped_and_exported_as_zero() -> None:
    torch_model = torch_models.create_model("resnet18", NUM_CLASSES)
    torch_model.train()(torch.randn(2, 1, 32, 32))  # num_batches_tracked -> 1
    state = _numpy_state(torch_model)
    assert state["bn1.num_batches_tracked"] == 1
    back = jax_to_torch(torch_to_jax("resnet18", state, NUM_CLASSES))
    assert back["bn1.num_batches_tracked"].dtype == np.int64
    assert back["bn1.num_batches_tracked"].shape == ()
    assert back["bn1.num_batches_tracked"] == 0
    np.testing.assert_array_equal(back["bn1.running_mean"], state["bn1.running_mean"])


class _TorchUp(nn.Module):
    """A decoder step like the Spleeter U-Net's: transposed conv, BN, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1)
        self.bn = nn.BatchNorm2d(3, momentum=0.01, eps=1e-3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.up(x)).mean(dim=(2, 3)))


class _JaxUp(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.up = conv_transpose2d(4, 3, 5, stride=2, padding=2, output_padding=1, rngs=rngs)
        self.bn = BatchNorm(3, momentum=0.99, epsilon=1e-3, use_running_average=True, rngs=rngs)
        self.head = linear(3, 2, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.head(self.bn(self.up(x)).mean(axis=(1, 2)))


def test_transposed_conv_rule_matches_torch() -> None:
    torch.manual_seed(2)
    torch_model = _TorchUp().eval()
    with torch.no_grad():
        torch_model.bn.running_mean.uniform_(-0.5, 0.5)
        torch_model.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 9, 7)
    up = torch_model.up(x)
    assert up.shape == (2, 3, 18, 14)  # (i - 1) * 2 - 2 * 2 + 5 + 1
    state = _numpy_state(torch_model)
    abstract = nnx.eval_shape(lambda: _JaxUp(nnx.Rngs(0)))
    model = load_torch_state(abstract, state)
    xj = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(
        np.asarray(model.up(xj)), up.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5, rtol=1e-5
    )
    with torch.no_grad():
        expected = torch_model(x).numpy()
    np.testing.assert_allclose(np.asarray(model(xj)), expected, atol=1e-5, rtol=1e-5)
    back = export_torch_state(model)
    for k, v in state.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
