"""Per-op time of a TFLite file from LiteRT's own op-level profiler.

The Python ``Interpreter`` exposes no profiler, so this drives LiteRT's C API (libLiteRt.so,
shipped in the ``ai-edge-litert`` wheel, ABI-stable "VERS_1.0" symbols) through ctypes: a
compiled model on the CPU (XNNPACK) with the runtime option ``enable_profiling``, run warm,
then the profiler's events of the timed runs. Only the stdlib, numpy and ctypes are used, so
the same code runs on an agent.

Events, in the order they began within each run (``LiteRtProfilerEventType``):
  DEFAULT "Invoke"                 the whole run (its time is the run's)
  OPERATOR_INVOKE_EVENT            a TFLite op the runtime ran itself; metadata = node index
  DELEGATE_PROFILED_OPERATOR_...   an op inside an XNNPACK partition; metadata = its index in
                                   the partition (0, 1, ... again in the next partition)
Times are whole microseconds; averaged over many runs they are unbiased (the clock's phase is
random against the op boundaries).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

_DEFAULT, _OPERATOR, _DELEGATE_PROFILED = 1, 1 << 1, 1 << 3
_CPU = 1  # kLiteRtHwAcceleratorCpu
_HOST_MEMORY = 1  # kLiteRtTensorBufferTypeHostMemory
_RANKED_TYPE_BYTES = 72  # sizeof(LiteRtRankedTensorType), asserted in its header
_LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
_FLOAT32 = 1  # LiteRtElementType = TfLiteType: float32 1, int32 2, uint8 3, int64 4, ...
_ITEMSIZE = {1: 4, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 2}


class OpProfileUnavailable(RuntimeError):
    """This runtime cannot profile ops here (no libLiteRt, an API it lacks, a failed call)."""


@dataclass(frozen=True)
class ProfiledOp:
    """One op of a run, in run order: ``source`` "tflite" (``index`` = node index) or
    "delegate" (``index`` = position in its XNNPACK partition; ``partition`` counts them)."""

    source: str
    kind: str  # CONV_2D, or XNNPACK's "Convolution (NHWC, F32) IGEMM", ...
    index: int
    partition: int | None
    ms: float  # per run

    def to_dict(self) -> dict[str, Any]:
        """The op as JSON-ready values.

        Returns:
            ``source``, ``kind``, ``index``, ``partition`` and ``ms``, as in the dataclass.
        """
        return dict(self.__dict__)


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_size_t),
        ("in_use", ctypes.c_size_t),
        ("private", ctypes.c_size_t),
    ]


class _Event(ctypes.Structure):  # ProfiledEventData, litert/c/litert_profiler_event.h
    _fields_ = [
        ("tag", ctypes.c_char_p),
        ("event_type", ctypes.c_int),
        ("start_us", ctypes.c_uint64),
        ("elapsed_us", ctypes.c_uint64),
        ("begin_memory", _Memory),
        ("end_memory", _Memory),
        ("metadata1", ctypes.c_uint64),
        ("metadata2", ctypes.c_uint64),
        ("source", ctypes.c_int),
    ]


# The C API as driven here (the environment argument of LiteRtCreateModelFromBuffer, options
# as TOML text) is LiteRT's from v2.1.6; older builds have other signatures under the same
# symbol names, which ctypes cannot tell apart.
MIN_LITERT = (2, 1, 6)


def _library() -> ctypes.CDLL:
    try:
        import ai_edge_litert
    except ImportError as exc:
        raise OpProfileUnavailable(
            "ai-edge-litert is not installed (its libLiteRt profiles ops)"
        ) from exc
    version = _litert_version()
    if version < MIN_LITERT:
        wanted = ".".join(map(str, MIN_LITERT))
        raise OpProfileUnavailable(
            f"ai-edge-litert {'.'.join(map(str, version))} is older than {wanted}, whose C API "
            "this profiler drives"
        )
    path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
    if not os.path.exists(path):
        raise OpProfileUnavailable(f"no {path} in this ai-edge-litert build")
    try:
        lib = ctypes.CDLL(path)
        lib.LiteRtCompiledModelGetProfiler  # noqa: B018 - fails early on builds without it
    except (OSError, AttributeError) as exc:
        raise OpProfileUnavailable(f"{path}: {exc}") from exc
    return lib


def _litert_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("ai-edge-litert")
    except PackageNotFoundError:
        return (0,)
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class _Session:
    """A compiled model with profiling on, and buffers for one input set."""

    def __init__(self, lib: ctypes.CDLL, model: bytes, threads: int) -> None:
        self.lib = lib
        self.env, self.model, self.options = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        self.compiled, self.profiler = ctypes.c_void_p(), ctypes.c_void_p()
        self.inputs: tuple[Any, int] = ((), 0)
        self.outputs: tuple[Any, int] = ((), 0)
        try:
            self._open(model, threads)
        except BaseException:
            self.close()  # what was made before the failure
            raise

    def _open(self, model: bytes, threads: int) -> None:
        self.call("LiteRtCreateEnvironment", 0, None, ctypes.byref(self.env))
        # LiteRT reads the model from this buffer for the session's whole life.
        self._content = ctypes.create_string_buffer(model, len(model))
        self.call(
            "LiteRtCreateModelFromBuffer",
            self.env,
            self._content,
            ctypes.c_size_t(len(model)),
            ctypes.byref(self.model),
        )
        self.call("LiteRtCreateOptions", ctypes.byref(self.options))
        self.call("LiteRtSetOptionsHardwareAccelerators", self.options, _CPU)
        # Options travel as TOML text under an identifier (litert/c/options/*.cc).
        self._add_options(b"runtime_options_string", b"enable_profiling = true\n")
        self._add_options(b"xnnpack", f"num_threads = {int(threads)}\n".encode())
        self.call(
            "LiteRtCreateCompiledModel",
            self.env,
            self.model,
            self.options,
            ctypes.byref(self.compiled),
        )
        self.signature = ctypes.c_void_p()
        self.call(
            "LiteRtGetModelSignature", self.model, ctypes.c_size_t(0), ctypes.byref(self.signature)
        )
        self.inputs = self._buffers("Input", resize=True)
        self.outputs = self._buffers("Output", resize=False)
        self.call("LiteRtCompiledModelGetProfiler", self.compiled, ctypes.byref(self.profiler))
        if not self.profiler:
            raise OpProfileUnavailable("LiteRT gave no profiler for this compiled model")

    def close(self) -> None:
        """Free what LiteRT allocated, children first (the caller owns all of it)."""
        for buffers, count in (self.inputs, self.outputs):
            for i in range(count):
                self.lib.LiteRtDestroyTensorBuffer(ctypes.c_void_p(buffers[i]))
        for name, handle in (
            ("LiteRtDestroyCompiledModel", self.compiled),
            ("LiteRtDestroyOptions", self.options),
            ("LiteRtDestroyModel", self.model),
            ("LiteRtDestroyEnvironment", self.env),
        ):
            if handle:
                getattr(self.lib, name)(handle)

    def call(self, name: str, *args: Any) -> None:
        """Call the C API function ``name`` and check its LiteRtStatus.

        Args:
            name: the libLiteRt symbol.
            *args: its arguments, as ctypes values.

        Raises:
            OpProfileUnavailable: this libLiteRt lacks ``name``, or it returned a failure.
        """
        try:
            function = getattr(self.lib, name)
        except AttributeError:
            raise OpProfileUnavailable(f"this libLiteRt has no {name}") from None
        status = function(*args)
        if status != 0:
            raise OpProfileUnavailable(f"{name} failed (LiteRtStatus {status})")

    def _add_options(self, identifier: bytes, toml: bytes) -> None:
        libc = ctypes.CDLL(None)
        libc.strdup.restype, libc.strdup.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        opaque = ctypes.c_void_p()
        # LiteRT owns the payload from here and frees it with libc's free.
        payload = ctypes.c_void_p(libc.strdup(toml))
        free = ctypes.cast(libc.free, ctypes.c_void_p)
        self.call("LiteRtCreateOpaqueOptions", identifier, payload, free, ctypes.byref(opaque))
        self.call("LiteRtAddOpaqueOptions", self.options, opaque)

    def _buffers(self, side: str, resize: bool) -> Any:
        rng = np.random.default_rng(0)
        count = ctypes.c_size_t()
        self.call(f"LiteRtGetNumSignature{side}s", self.signature, ctypes.byref(count))
        buffers = []
        for i in range(count.value):
            tensor = ctypes.c_void_p()
            self.call(
                f"LiteRtGetSignature{side}TensorByIndex",
                self.signature,
                ctypes.c_size_t(i),
                ctypes.byref(tensor),
            )
            raw = (ctypes.c_uint8 * _RANKED_TYPE_BYTES)()
            self.call("LiteRtGetRankedTensorType", tensor, ctypes.byref(raw))
            # Layout: element type (int32), rank in the low 7 bits of a uint32, 8 dims.
            words = np.frombuffer(bytes(raw), dtype=np.int32).copy()
            rank = int(words[1]) & 0x7F
            shape = [max(int(d), 1) for d in words[2 : 2 + rank]]  # dynamic batch -> 1
            words[2 : 2 + rank] = shape
            ctypes.memmove(raw, words.tobytes(), _RANKED_TYPE_BYTES)
            if resize and rank:
                dims = (ctypes.c_int * rank)(*shape)
                self.call(
                    "LiteRtCompiledModelResizeInputTensor",
                    self.compiled,
                    ctypes.c_size_t(0),
                    ctypes.c_size_t(i),
                    dims,
                    ctypes.c_size_t(rank),
                )
            buffer = ctypes.c_void_p()
            # Large enough for any element type of this shape (8 bytes each at most).
            size = ctypes.c_size_t(8 * int(np.prod(shape)) + 64)
            self.call(
                "LiteRtCreateManagedTensorBuffer",
                self.env,
                _HOST_MEMORY,
                ctypes.byref(raw),
                size,
                ctypes.byref(buffer),
            )
            buffers.append(buffer)
            if resize:  # an input: data like the measurement's (bench.py), not garbage
                self._fill(buffer, int(words[0]), int(np.prod(shape)), rng)
        return (ctypes.c_void_p * len(buffers))(*buffers), len(buffers)

    def _fill(self, buffer: Any, element_type: int, count: int, rng: np.random.Generator) -> None:
        """Random normal floats into a float32 input (uninitialised memory may hold NaNs or
        denormals, which take slow paths); zeros into any other type."""
        itemsize = _ITEMSIZE.get(element_type)
        if itemsize is None:
            return
        values = (
            rng.standard_normal(count).astype(np.float32).tobytes()
            if element_type == _FLOAT32
            else bytes(count * itemsize)
        )
        address = ctypes.c_void_p()
        self.call("LiteRtLockTensorBuffer", buffer, ctypes.byref(address), _LOCK_WRITE)
        try:
            ctypes.memmove(address, values, len(values))
        finally:
            self.call("LiteRtUnlockTensorBuffer", buffer)

    def run(self) -> None:
        (ins, n_in), (outs, n_out) = self.inputs, self.outputs
        self.call(
            "LiteRtRunCompiledModel",
            self.compiled,
            ctypes.c_size_t(0),
            ctypes.c_size_t(n_in),
            ins,
            ctypes.c_size_t(n_out),
            outs,
        )

    def events(self) -> list[_Event]:
        """The profiler's events since it was last reset.

        Returns:
            The events in the order they began (see the module docstring for their types).

        Raises:
            OpProfileUnavailable: the profiler could not be read.
        """
        count = ctypes.c_int()
        self.call("LiteRtGetNumProfilerEvents", self.profiler, ctypes.byref(count))
        events = (_Event * count.value)()
        self.call("LiteRtGetProfilerEvents", self.profiler, count, events)
        return list(events)


@dataclass(frozen=True)
class OpProfile:
    ops: list[ProfiledOp]  # in run order
    run_ms: float  # the runs' own time ("Invoke"), trimmed mean
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready values.

        Returns:
            ``ops`` (each ``ProfiledOp.to_dict()``, in run order), ``run_ms`` and ``runs``.
        """
        return {"ops": [op.to_dict() for op in self.ops], "run_ms": self.run_ms, "runs": self.runs}


def profile_ops(model: bytes, threads: int, runs: int = 200, warmup: int = 20) -> OpProfile:
    """Per-op times of the TFLite file ``model``, warm: ``warmup`` untimed runs, then
    ``runs`` profiled. Raises OpProfileUnavailable when this LiteRT cannot profile.

    Args:
        model: the TFLite flatbuffer's bytes.
        threads: XNNPACK threads, as in the measurement the profile explains.
        runs: profiled runs; more make the per-op means steadier.
        warmup: untimed runs before them.

    Returns:
        Each op's trimmed-mean time per run, in run order, and the run's own time.

    Raises:
        OpProfileUnavailable: no suitable ai-edge-litert, a C API call failed, or the runs
            did not all show the same ops.
    """
    session = _Session(_library(), model, threads)
    try:
        for _ in range(warmup):
            session.run()
        session.call("LiteRtResetProfiler", session.profiler)
        session.call("LiteRtStartProfiler", session.profiler)
        for _ in range(runs):
            session.run()
        session.call("LiteRtStopProfiler", session.profiler)
        return summarise(session.events(), runs)
    finally:
        session.close()


def summarise(events: list[Any], runs: int) -> OpProfile:
    """Events of ``runs`` runs -> each op's trimmed-mean time per run. Every run must show
    the same ops in the same order (else OpProfileUnavailable: the profile is not one
    model's).

    Args:
        events: the profiler's events (``_Event``-like: tag, event_type, metadata1,
            elapsed_us), in the order they began.
        runs: how many runs were profiled.

    Returns:
        The ops in run order with their mean ms per run, and the mean run time, both over
        the runs whose run time is central (a tenth cut at each end).

    Raises:
        OpProfileUnavailable: the events hold another number of runs, no ops, or runs with
            different ops.
    """
    per_run, invokes = _ops_by_run(events)
    signature = _same_ops_in_every_run(per_run, runs)
    times = np.array([[us for *_, us in ops] for ops in per_run], dtype=float) / 1000.0
    # The same runs for every op and for the run itself: those whose run time is central (a
    # tenth cut at each end). Means over one set of runs add up, so the ops' times sum to
    # the run's less its own overhead; trimming each op on its own would drop the disturbed
    # moments of every op but keep them in the run's time whenever a host disturbs more
    # than a tenth of the runs, each in another op.
    kept = _central(np.asarray(invokes))
    profiled = _profiled_ops(signature, times, kept)
    return OpProfile(profiled, float(np.asarray(invokes)[kept].mean()), runs)


def _ops_by_run(events: list[Any]) -> tuple[list[list[tuple[int, str, int, int]]], list[float]]:
    """Each run's ops as (event type, tag, metadata1, elapsed us), and each run's ms."""
    per_run: list[list[tuple[int, str, int, int]]] = []
    invokes: list[float] = []
    for event in events:
        tag = (event.tag or b"").decode(errors="replace")
        if event.event_type == _DEFAULT and tag == "Invoke":
            per_run.append([])
            invokes.append(event.elapsed_us / 1000.0)
        elif event.event_type in (_OPERATOR, _DELEGATE_PROFILED) and per_run:
            per_run[-1].append((event.event_type, tag, int(event.metadata1), event.elapsed_us))
    return per_run, invokes


def _same_ops_in_every_run(
    per_run: list[list[tuple[int, str, int, int]]], runs: int
) -> list[tuple[int, str, int]]:
    """The ops (type, tag, metadata1) every one of ``runs`` runs showed, or OpProfileUnavailable."""
    if len(per_run) != runs or not per_run[0]:
        raise OpProfileUnavailable(
            f"the profiler recorded {len(per_run)} runs with ops, expected {runs}"
        )
    signature = [(t, tag, meta) for t, tag, meta, _ in per_run[0]]
    for ops in per_run:
        if [(t, tag, meta) for t, tag, meta, _ in ops] != signature:
            raise OpProfileUnavailable("runs of one file showed different ops")
    return signature


def _profiled_ops(
    signature: list[tuple[int, str, int]], times: np.ndarray, kept: np.ndarray
) -> list[ProfiledOp]:
    """The ops in run order, each with its XNNPACK partition and mean ms over the kept runs."""
    profiled, partition, last = [], -1, None
    for column, (kind_code, tag, meta) in enumerate(signature):
        if kind_code == _DELEGATE_PROFILED:
            # A partition's ops count up from 0; a fall (or a TFLite op between) starts the next.
            if last is None or meta <= last:
                partition += 1
            last = meta
        else:
            last = None
        profiled.append(
            ProfiledOp(
                source="delegate" if kind_code == _DELEGATE_PROFILED else "tflite",
                kind=tag,
                index=meta,
                partition=partition if kind_code == _DELEGATE_PROFILED else None,
                ms=float(times[kept, column].mean()),
            )
        )
    return profiled


def _central(values: np.ndarray, cut: float = 0.1) -> np.ndarray:
    """Indices of the central values (a tenth cut at each end): means over them are robust
    to a run the host disturbed and unbiased on microsecond ticks, unlike the median of a
    few distinct ticks."""
    order = np.argsort(values, kind="stable")
    k = int(len(order) * cut)
    return np.sort(order[k : len(order) - k])


def profile_in_child(model: bytes, threads: int, runs: int, timeout_s: float = 300.0) -> dict:
    """``profile_ops`` in a process of its own: a native crash or hang of the C API costs
    the profile (its reason is returned under "unavailable"), never the caller's measurement.
    The child inherits the caller's CPU affinity.

    Args:
        model: the TFLite flatbuffer's bytes.
        threads: XNNPACK threads.
        runs: profiled runs.
        timeout_s: the child's wall-clock limit, in seconds.

    Returns:
        ``OpProfile.to_dict()``, or ``{"unavailable": why}`` when it could not be profiled,
        crashed or timed out.
    """
    with tempfile.TemporaryDirectory(prefix="devicefit-profile-") as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as handle:
            handle.write(model)
        command = [
            sys.executable,
            "-m",
            "devicefit.deploy.op_profiler",
            path,
            str(threads),
            str(runs),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"unavailable": f"the op profiler did not finish in {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " / ".join((done.stderr or "").strip().splitlines()[-2:])
        return {"unavailable": f"the op profiler exited with {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    """python -m devicefit.deploy.op_profiler MODEL.tflite THREADS RUNS: one JSON line, the
    profile or {"unavailable": why}."""
    if len(argv) != 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "rb") as handle:
        model = handle.read()
    try:
        result = profile_ops(model, int(argv[1]), int(argv[2])).to_dict()
    except OpProfileUnavailable as exc:
        result = {"unavailable": str(exc)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
