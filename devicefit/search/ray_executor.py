"""Trials as Ray tasks on a cluster, while the driver alone asks and tells the study.

The task's files (a built-in task's trained model, or the user's model and data)
travel through Ray's object store, so nodes need no shared filesystem: each
worker process unpacks them once into its own folder. A task whose node dies is
retried by Ray with the same request (the same plan); worker processes exit
after ``recycle_after`` trials because the TFLite converter leaks memory on
every call. The node that ran each trial is recorded in its output.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from devicefit.search.executors import Executor, R, Request
from devicefit.search.trial import TrialOutput
from devicefit.spaces import REGISTERED_ENV
from devicefit.tasks.base import TaskSpec

# Files of one task, keyed by their path relative to the bundle root.
Bundle = dict[str, bytes]
_unpacked: dict[str, Path] = {}  # bundle digest -> where this worker process put it


def task_bundle(spec: TaskSpec) -> tuple[Bundle, TaskSpec]:
    """The files a worker needs to load ``spec``, and the spec with paths relative to
    the bundle (``builtin/...`` is a built-in task's cache folder).

    Args:
        spec: the task as this machine loads it.

    Returns:
        (bundle path -> file contents, the spec to send); a built-in task's spec as it is.
    """
    files: Bundle = {}
    if spec.builtin:
        from devicefit.tasks.cache import task_cache_dir

        folder = task_cache_dir(spec.builtin)
        for path in sorted(folder.glob("*.keras")):
            files[f"builtin/{spec.builtin}/{path.name}"] = path.read_bytes()
        return files, spec
    relative: dict[str, Any] = {}
    for field_name in ("model_path", "data_path"):
        value = getattr(spec, field_name)
        if value is None:
            continue
        path = Path(value)
        name = f"user/{field_name}/{path.name}"
        if path.is_dir():  # a SavedModel folder
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    files[f"{name}/{item.relative_to(path)}"] = item.read_bytes()
        else:
            files[name] = path.read_bytes()
        relative[field_name] = name
    return files, replace(spec, **relative)


def _digest(bundle: Bundle) -> str:
    digest = hashlib.sha256()
    for name in sorted(bundle):
        digest.update(name.encode())
        digest.update(hashlib.sha256(bundle[name]).digest())
    return digest.hexdigest()[:16]


def unpack(bundle: Bundle, spec: TaskSpec) -> TaskSpec:
    """On the worker: write the bundle once per process; the spec pointing at it.

    Args:
        bundle: the task's files, from ``task_bundle``.
        spec: the spec ``task_bundle`` made, with paths relative to the bundle.

    Returns:
        The spec with absolute paths into the unpacked folder (a built-in task's as it is,
        with ``DEVICEFIT_CACHE`` pointed there).
    """
    key = _digest(bundle)
    if key not in _unpacked:
        root = Path(tempfile.mkdtemp(prefix=f"devicefit-task-{key}-"))
        for name, data in bundle.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _unpacked[key] = root
    root = _unpacked[key]
    if spec.builtin:
        # The built-in task finds its trained model in the cache: point the cache here.
        os.environ["DEVICEFIT_CACHE"] = str(root / "builtin")
        return spec
    changes: dict[str, Any] = {
        f: str(root / getattr(spec, f)) for f in ("model_path", "data_path") if getattr(spec, f)
    }
    return replace(spec, **changes)


def run_on_node(request: Request[R], bundle: Bundle, threads: int) -> R:
    """The Ray task: one request (a trial, a share of a sensitivity profile) on whatever
    node Ray chose; a trial records the node and the worker's memory.

    Args:
        request: the request, its task being the bundle-relative spec.
        bundle: the task's files (``task_bundle``).
        threads: TensorFlow threads for the request.

    Returns:
        ``request.run()``'s result.
    """
    import ray

    from devicefit.search.executors import _configure_threads

    _configure_threads(threads)
    spec = unpack(bundle, request.task)
    out = replace(cast(Any, request), task=spec).run()  # every request is a dataclass
    if isinstance(out, TrialOutput):
        out.node = ray.get_runtime_context().get_node_id()
        out.worker_rss_mb = resident_mb()
    return out


def resident_mb() -> float | None:
    """This process's resident memory now (the converter's leak shows up here).

    Returns:
        VmRSS in MB; None where it cannot be read.
    """
    from devicefit.deploy.bench import proc_status_mb

    return proc_status_mb("VmRSS")


class RayExecutor(Executor):
    """``workers`` trials at a time as Ray tasks of ``cpus_per_trial`` CPUs each."""

    def __init__(
        self,
        address: str | None,
        workers: int,
        task: TaskSpec,
        cpus_per_trial: int = 1,
        recycle_after: int = 20,
        node_retries: int = 3,
    ) -> None:
        from devicefit.evaluators.ray_device import connect

        self.ray = connect(None if address in (None, "auto") else address)
        self.workers = workers
        self.cpus_per_trial = cpus_per_trial
        bundle, self.spec = task_bundle(task)
        self._bundle = self.ray.put(bundle)
        # Techniques registered in this process: Ray's workers do not inherit its
        # environment, so their tasks are given the variable that names them.
        registered = os.environ.get(REGISTERED_ENV)
        env = {"runtime_env": {"env_vars": {REGISTERED_ENV: registered}}} if registered else {}
        # max_calls belongs to ray.remote itself, not to .options().
        self._task = self.ray.remote(
            num_cpus=cpus_per_trial,
            max_calls=recycle_after,  # the worker process exits after this many trials
            max_retries=node_retries,  # system failures only: a dead node or worker
            **env,
        )(run_on_node)
        self._refs: list[Any] = []

    def submit(self, request: Request[R]) -> cf.Future[R]:
        # Every request is a dataclass (TrialRequest, SensitivityRequest); the Protocol
        # cannot say so, hence the cast.
        sent = replace(cast(Any, request), task=self.spec)
        ref = self._task.remote(sent, self._bundle, self.cpus_per_trial)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
        self._refs.clear()
