"""``devicefit inspect``: per-layer MACs, channel groups, and which techniques apply or why not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from spaces_zoo import build_zoo_model

from devicefit.quiet import silence_tensorflow
from devicefit.spaces import all_techniques
from devicefit.spaces.inspection import inspect_model, print_inspection
from devicefit.spaces.pruning import ChannelPruning

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


class Mystery(keras.layers.Layer):
    """Reverses the channel order: a layer the dependency graph must not see through."""

    def call(self, x: Any) -> Any:
        return x[..., ::-1]


def _mystery_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = Mystery(name="mystery")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = L.Conv2D(8, 1, activation="relu", name="c3")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, outputs)


def test_unknown_layer_freezes_only_its_own_channels_and_inspect_says_why() -> None:
    model = _mystery_model()
    applied = ChannelPruning().rewrite(model, {"ratio": 0.5})
    pruned = applied.model
    assert pruned.get_layer("c1").filters == 8  # feeds the unknown layer: frozen
    assert pruned.get_layer("c2").filters == 4  # everything else is still compressed
    assert pruned.get_layer("c3").filters == 4
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    assert pruned.predict(x, verbose=0).shape == (2, 8, 8, 2)

    reports = {r.name: r for r in inspect_model(model, (1, 8, 8, 3), all_techniques())}
    why = reports["c1"].not_applicable["channel_pruning"]
    assert "Mystery 'mystery'" in why and "does not know" in why
    assert "channel_pruning" in reports["c2"].applies
    assert "channel_pruning" in reports["c3"].applies
    assert "model output" in reports["head"].not_applicable["channel_pruning"]
    assert reports["c2"].macs == 8 * 8 * 3 * 3 * 8 * 8
    assert reports["c2"].params == 3 * 3 * 8 * 8 + 8

    console = Console(record=True, width=240)
    print_inspection(list(reports.values()), console)
    text = console.export_text()
    assert "Mystery 'mystery'" in text and "c2" in text


def test_inspect_lists_residual_groups_of_resnet50() -> None:
    zoo = build_zoo_model("resnet50")
    reports = {r.name: r for r in inspect_model(zoo.model, zoo.input_shape, [ChannelPruning()])}
    text = reports["conv2_block1_0_conv"].applies["channel_pruning"]
    assert "pruned together with" in text and "conv2_block1_3_conv" in text
    assert reports["conv2_block1_0_conv"].group == reports["conv2_block3_3_conv"].group


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devicefit", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def test_cli_inspects_a_saved_model_as_json(tmp_path: Path) -> None:
    path = tmp_path / "unet.keras"
    build_zoo_model("unet").model.save(path)
    run = _cli("--model", str(path), "--json")
    assert run.returncode == 0, run.stderr
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    assert rows["up"]["kind"] == "Conv2DTranspose"
    assert "channel_pruning" in rows["up"]["applies"]
    assert rows["mask"]["not_applicable"]["channel_pruning"].startswith("group mask is frozen")


def test_cli_refuses_bad_input_shapes_and_missing_targets(tmp_path: Path) -> None:
    path = tmp_path / "srcnn.keras"
    build_zoo_model("srcnn").model.save(path)
    unknown = _cli("--model", str(path))
    assert unknown.returncode == 2
    assert "--input-shape: the model takes (None, None, None, 1)" in unknown.stderr
    bad = _cli("--model", str(path), "--input-shape", "1,x,3")
    assert bad.returncode == 2 and "--input-shape: expected integers" in bad.stderr
    neither = _cli()
    assert neither.returncode == 2 and "give either --task or --model" in neither.stderr
    ok = _cli("--model", str(path), "--input-shape", "1,16,16,1", "--techniques", "lowrank")
    assert ok.returncode == 0, ok.stderr
    assert "patch" in ok.stdout


def test_cli_shows_where_the_time_goes_on_a_device(tmp_path: Path) -> None:
    """``--device local``: every layer's measured time beside its MACs, from a per-op profile
    of the float32 file; layers and unmapped ops hold the whole profiled time."""
    path = tmp_path / "unet.keras"
    build_zoo_model("unet").model.save(path)
    run = _cli("--model", str(path), "--device", "local", "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    timed = [row for row in rows if "local" in row["time_ms"]]
    weighted = {"enc1", "enc2", "bottleneck", "up", "dec", "mask"}
    assert weighted <= {row["name"] for row in timed}
    assert all(row["time_ms"]["local"] >= 0 for row in timed)
    assert sum(row["time_share"]["local"] for row in timed) == pytest.approx(1.0)
    table = _cli("--model", str(path), "--device", "local", columns=250)
    assert table.returncode == 0, table.stderr
    assert "per-op profile: the ops took" in table.stdout
    assert re.search(r"\d+\.\d{3} ms \(\d+%\)", table.stdout)  # a layer's time and share


def test_cli_refuses_a_bad_device_or_thread_count(tmp_path: Path) -> None:
    path = tmp_path / "unet.keras"
    build_zoo_model("unet").model.save(path)
    threads = _cli("--model", str(path), "--device", "local", "--threads", "0")
    assert threads.returncode == 2 and "--threads: must be >= 1" in threads.stderr
    device = _cli("--model", str(path), "--device", "nonsense://x")
    assert device.returncode == 2 and "nonsense://x" in device.stderr
