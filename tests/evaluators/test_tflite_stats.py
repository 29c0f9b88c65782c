import keras
import numpy as np
import pytest

from devicefit.errors import TrialFailed
from devicefit.evaluators.tflite_stats import tflite_stats
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.quantization import Quantization


def _model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same"),
            keras.layers.Conv2D(4, 1),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


# conv 3x3x3->8, depthwise 3x3 on 8 channels, 1x1 8->4, dense 1024->10, all at 16x16
EXPECTED_MACS = 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 16 * 16 * 4 * 8 + 1024 * 10


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic_int8", "int8"])
def test_macs_and_params_read_from_the_file(mode: str) -> None:
    model = _model()
    ctx = ConvertContext((1, 16, 16, 3), np.random.rand(8, 16, 16, 3).astype("float32"))
    data = Quantization().convert(model, {"mode": mode}, ctx)
    stats = tflite_stats(data)
    assert stats.macs == EXPECTED_MACS
    assert stats.size_bytes == len(data)
    # Within a few elements of Keras' count (the converter may fold zero biases).
    assert abs(stats.params - model.count_params()) <= 64
    assert stats.ops["CONV_2D"] == 2 and stats.ops["FULLY_CONNECTED"] == 1


def test_smaller_model_has_fewer_macs(tiny_tflite: bytes) -> None:
    assert tflite_stats(tiny_tflite).macs == 16 * 16 * 8 * 27 + 2048 * 10


def test_garbage_is_rejected() -> None:
    with pytest.raises(TrialFailed):
        tflite_stats(b"\x00" * 3)
