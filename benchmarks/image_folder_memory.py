"""Driver memory of a search on a folder of images, and on one ten times larger (issue 15).

    python benchmarks/image_folder_memory.py [--per-class 100] [--scale 10] [--trials 6]
        [--source folder|loader]

Makes two folders of crops of scikit-image's photos (one class per photo; the second
``--scale`` times the images of the first), trains a small CNN on the first at 64x64,
then runs ``devicefit search --model net.keras --data DIR --image-size 64,64`` on each,
each driver in its own process, and prints the driver's peak resident memory (its own,
not its trial workers') with the size the splits would take decoded. The folders and
studies go to a temporary directory.

``--source loader`` searches the same folders through ``--data loaders.py:FUNCTION``, a
tf.data pipeline of Keras's ``image_dataset_from_directory`` (70/30 split, the 30
halved into validation and test), which the driver reads to disk once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DRIVER = """
import json, resource, sys
from devicefit.cli import main
code = main(sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("PEAK " + json.dumps({"code": code, "driver_mb": own, "workers_mb": workers}))
"""
STUDY = """min_runs = 10
min_seconds = 0.2
confirm_rounds = 0
techniques = ["channel_pruning", "quantization"]
[ranges.finetune]
epochs = [1, 1]
"""


def train(folder: Path, out: Path) -> None:
    import keras

    from devicefit.tasks.image_folder import read_image_folder

    splits = read_image_folder(str(folder), (64, 64), 3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64, 64, 3)), keras.layers.Rescaling(1 / 255)]
        + [keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D()]
        + [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()]
        + [keras.layers.Dense(3)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(splits.x_train[:], splits.y_train, epochs=20, verbose=0)
    model.save(out)


LOADER = """import keras


def {name}():
    return keras.utils.image_dataset_from_directory(
        "{folder}", image_size=(64, 64), batch_size=32, validation_split=0.3,
        subset="both", seed=0, verbose=False,
    )
"""


def data_flags(root: Path, folder: Path, source: str, name: str) -> list[str]:
    """``--data`` for ``folder``: the folder itself, or a loader of it written to ``root``."""
    if source == "folder":
        return ["--data", str(folder), "--image-size", "64,64"]
    loaders = root / f"loaders_{name}.py"
    loaders.write_text(LOADER.format(name=name, folder=folder))
    return ["--data", f"{loaders}:{name}"]


def search(root: Path, model: Path, folder: Path, trials: int, name: str, source: str) -> dict:
    from devicefit.tasks.image_folder import read_image_folder

    splits = read_image_folder(str(folder), (64, 64), 3)
    images = len(splits.x_train) + len(splits.x_val) + len(splits.x_test)
    argv = ["search", "--config", str(root / "study.toml"), "--model", str(model)]
    argv += [*data_flags(root, folder, source, name), "--trials", str(trials)]
    argv += ["--study", name, "--results", str(root / "out"), "--max-metric-drop", "20"]
    began = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, check=False
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("PEAK ")), None)
    if line is None:
        raise SystemExit(f"search on {folder} failed:\n{run.stderr[-3000:]}")
    peak = json.loads(line[5:])
    return {
        "folder": name,
        "source": source,
        "images": images,
        "decoded_mb": images * 64 * 64 * 3 * 4 / 2**20,  # float32, were it all in memory
        "wall_s": round(time.monotonic() - began, 1),
        **peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--source", choices=("folder", "loader"), default="folder")
    args = parser.parse_args()
    from image_folders import make_image_folder

    with tempfile.TemporaryDirectory(prefix="devicefit-folders-") as tmp:
        root = Path(tmp)
        small = make_image_folder(root / "small", args.per_class, crop=64)
        large = make_image_folder(root / "large", args.per_class * args.scale, crop=64, seed=1)
        (root / "study.toml").write_text(STUDY)
        train(small, root / "net.keras")
        rows = [
            search(root, root / "net.keras", small, args.trials, "small", args.source),
            search(root, root / "net.keras", large, args.trials, "large", args.source),
        ]
    for row in rows:
        print(json.dumps(row))
    ratio = rows[1]["driver_mb"] / rows[0]["driver_mb"]
    verdict = "PASS" if ratio < 1.5 else "FAIL"
    print(
        f"driver peak {rows[1]['driver_mb']:.0f} MB on {rows[1]['images']} images against "
        f"{rows[0]['driver_mb']:.0f} MB on {rows[0]['images']}: {ratio:.2f}x ({verdict}: < 1.5x)"
    )


if __name__ == "__main__":
    main()
