"""A stand-in for an Android phone behind adb, for the adb evaluator's tests.

No phone is attached to the test machine, so ``adb`` here is this script: ``push``
copies into a folder that plays the phone's storage, ``shell`` runs commands with
phone paths mapped into it, and the phone's ``benchmark_model`` measures the file
with the real LiteRT interpreter and prints its statistics in benchmark_model's
own format (the parser itself is tested on published outputs).

    python fake_android.py ROOT -s SERIAL get-state|push LOCAL REMOTE|shell CMD...
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

BINARY = "/data/local/tmp/benchmark_model"


def _local(root: Path, remote: str) -> Path:
    return root / remote.lstrip("/")


def _benchmark_model(root: Path, args: list[str]) -> int:
    import numpy as np

    from devicefit.deploy.bench import benchmark

    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
    content = _local(root, flags["graph"]).read_bytes()
    if flags.get("enable_op_profiling") == "true":
        return _op_profile(content, flags)
    spec = {
        "threads": int(flags.get("num_threads", 1)),
        "min_runs": int(flags.get("num_runs", 50)),
        "min_seconds": float(flags.get("min_secs", 1)),
        "warmup": int(flags.get("warmup_runs", 1)),
        "warmup_seconds": float(flags.get("warmup_min_secs", 0.5)),
    }
    try:
        r = benchmark(content, spec)
    except Exception as exc:  # noqa: BLE001 - as the real binary: print and fail
        print(f"ERROR: {exc}")
        return 1
    us = {k: r[k] * 1000 for k in ("min_ms", "mean_ms", "std_ms", "median_ms", "p90_ms")}
    p5, p95 = np.percentile([r["min_ms"], r["median_ms"], r["p90_ms"]], [5, 95]) * 1000
    print(f"INFO: Initialized session in {r['init_ms']:.3f}ms.")
    print(f"INFO: count={r['warmup_runs']} first=0 curr=0 min=0 max=0 avg=0 std=0")
    print(
        f"INFO: count={r['count']} first={r['first_inference_ms'] * 1000:.0f} "
        f"curr={us['median_ms']:.0f} min={us['min_ms']:.0f} max={us['p90_ms']:.0f} "
        f"avg={us['mean_ms']:g} std={us['std_ms']:.0f} p5={p5:.0f} "
        f"median={us['median_ms']:.0f} p95={p95:.0f}"
    )
    print(
        f"INFO: Inference timings in us: Init: {r['init_ms'] * 1000:.0f}, "
        f"First inference: {r['first_inference_ms'] * 1000:.0f}, "
        f"Warmup (avg): {us['mean_ms']:g}, Inference (avg): {us['mean_ms']:g}"
    )
    print(
        "INFO: Memory footprint delta from the start of the tool (MB): "
        f"init=0 overall={r['model_memory_mb']:g}"
    )
    print(
        f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {r['peak_memory_mb']:g}"
    )
    return 0


def _op_profile(content: bytes, flags: dict[str, str]) -> int:
    """The per-op table of a recent build (the layout of the parser's test files), from
    LiteRT's real op profiler."""
    from devicefit.deploy.op_profiler import profile_ops

    runs = int(flags.get("num_runs", 50))
    profile = profile_ops(content, int(flags.get("num_threads", 1)), runs)
    print(f"INFO: count={runs} first=0 curr=0 min=0 max=0 avg={profile.run_ms * 1000:g} std=0")
    print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print(
        f"{'[node type]':>48}{'[first]':>17}{'[avg ms]':>16}{'[%]':>15}{'[cdf%]':>16}"
        f"{'[mem KB]':>18}{'[times called]':>22}  [Name]"
    )
    total = sum(op.ms for op in profile.ops) or 1.0
    cdf = 0.0
    for op in profile.ops:
        share = 100 * op.ms / total
        cdf += share
        name = (
            f"Delegate/{op.kind}:{op.index}"
            if op.source == "delegate"
            else f"[t{op.index}]:{op.index}"
        )
        print(
            f"{op.kind:>48}{op.ms:>17.3f}{op.ms:>16.3f}{share:>14.3f}%{cdf:>15.3f}%"
            f"{0.0:>18.3f}{1:>17}       {name}"
        )
    print()
    return 0


def main(argv: list[str]) -> int:
    root, args = Path(argv[0]), argv[1:]
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
        if serial != "emulator-5554":
            print(f"adb: device '{serial}' not found", file=sys.stderr)
            return 1
    if args == ["get-state"]:
        print("device")
        return 0
    if args[0] == "push":
        target = _local(root, args[2])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args[1], target)
        return 0
    if args[0] == "shell":
        command = args[1:]
        if command[0] == BINARY:
            return _benchmark_model(root, command[1:])
        if command[:2] == ["rm", "-f"]:
            _local(root, command[2]).unlink(missing_ok=True)
            return 0
        if command[0] == "getprop":
            print(
                {"ro.product.model": "Fake Pixel", "ro.build.version.release": "15"}.get(
                    command[1], ""
                )
            )
            return 0
        if command[0].startswith("cat "):
            return 1  # no thermal zones on this phone
        print(f"/system/bin/sh: {command[0]}: not found")
        return 127
    print(f"fake adb: unsupported {args}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def make_fake_adb(folder: Path) -> Path:
    """An executable ``adb`` in ``folder`` that runs this script (phone storage inside)."""
    adb = folder / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{__file__}" "{folder}/storage" "$@"\n')
    adb.chmod(0o755)
    return adb
