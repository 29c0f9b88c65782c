"""The model cache: trains once, saves atomically, survives a damaged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devicefit.quiet import silence_tensorflow
from devicefit.tasks.cache import CACHE_ENV, cache_root, cached_model

silence_tensorflow()

import keras  # noqa: E402


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_root_follows_the_environment(
    own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cache_root() == own_cache
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root().name == "devicefit"


def test_trains_once_then_loads(own_cache: Path) -> None:
    calls = []

    def train(callbacks: list[keras.callbacks.Callback]) -> keras.Model:
        calls.append(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("adam", "mse")  # the saved file must not carry the optimizer
        x = np.ones((16, 4), np.float32)
        model.fit(x, np.zeros((16, 2)), epochs=2, verbose=0, callbacks=callbacks)
        return model

    first = cached_model("toy", "toy-v1.keras", train)
    second = cached_model("toy", "toy-v1.keras", train)
    assert len(calls) == 1
    assert [p.name for p in (own_cache / "toy").glob("*.keras")] == ["toy-v1.keras"]  # no temp left
    np.testing.assert_array_equal(first.get_weights()[0], second.get_weights()[0])
    assert not second.compiled

    (own_cache / "toy" / "toy-v1.keras").write_bytes(b"damaged")
    cached_model("toy", "toy-v1.keras", train)
    assert len(calls) == 2
