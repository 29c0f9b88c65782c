"""A share of a sensitivity profile's points, scored on one of the study's workers.

The profile's jobs (spaces/sensitivity.py: unit x technique x level) are independent, so a
study with several workers (a local pool or Ray) hands them out in requests like trials:
each worker loads the task once, measures the untouched model's reference once per way of
scoring (Keras model or TFLite file), converts its float file once for the quantization
points, and returns its points. Which worker scores a point does not change it: the same
settings on the same validation subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.spaces.sensitivity import SensitivityJob, SensitivityPoint
from devicefit.tasks.base import TaskSpec
from devicefit.tasks.named_inputs import first_rows

SAMPLES = 256  # validation examples each point is scored on

# (task, samples) -> the baselines of each way of scoring (spaces/sensitivity.py), made once
# per worker process.
_baselines: dict[tuple[TaskSpec, int], dict[str, Any]] = {}


def profile_inputs(task: Any, samples: int = SAMPLES) -> tuple[Any, Any]:
    """The validation subset every point of a profile is scored on.

    Args:
        task: the loaded task.
        samples: how many validation examples, from the first.

    Returns:
        (inputs, targets) of the first ``samples`` validation examples.
    """
    from devicefit.tasks.base import take

    return first_rows(task.data.x_val, samples), take(task.data.y_val, slice(None, samples))


@dataclass(frozen=True)
class SensitivityRequest:
    """Score ``jobs`` of the task ``task`` names on its first ``samples`` validation
    examples; an Executor runs it as it runs a TrialRequest (``run``)."""

    task: TaskSpec
    jobs: tuple[SensitivityJob, ...]
    samples: int = SAMPLES

    def run(self) -> list[SensitivityPoint]:
        """The jobs' points, in the jobs' order; a setting that fails is a point with its
        error. Raises only when the task itself cannot be loaded.

        Returns:
            One SensitivityPoint per job.
        """
        from devicefit.spaces import get_technique
        from devicefit.spaces.base import ConvertContext
        from devicefit.spaces.sensitivity import score_jobs
        from devicefit.tasks import load_task

        task = load_task(self.task)
        x, y = profile_inputs(task, self.samples)
        context = ConvertContext(task.input_shape, task.calibration)
        techniques = {name: get_technique(name) for name in {j.technique for j in self.jobs}}
        baselines = _baselines.setdefault((self.task, self.samples), {})
        jobs = list(self.jobs)
        return score_jobs(task.model, jobs, techniques, x, y, task.metric, context, baselines)


def share_jobs(
    task: TaskSpec, jobs: list[SensitivityJob], workers: int, samples: int = SAMPLES
) -> list[SensitivityRequest]:
    """The jobs in about six requests per worker (few enough that a worker's start and its
    references are paid rarely, enough to keep every worker busy to the end). A unit's
    levels stay together and the units are dealt out in turn, so every request mixes
    techniques and none holds all of the slow ones (quantization converts a file per point).

    Args:
        task: the task as workers load it.
        jobs: the profile's jobs not scored yet.
        workers: the executor's workers.
        samples: validation examples each point is scored on.

    Returns:
        The non-empty requests.
    """
    groups: dict[tuple[str, str], list[SensitivityJob]] = {}
    for job in jobs:
        groups.setdefault((job.technique, job.unit), []).append(job)
    count = max(1, min(len(groups), 6 * workers))
    shares: list[list[SensitivityJob]] = [[] for _ in range(count)]
    for number, group in enumerate(groups.values()):
        shares[number % count].extend(group)
    return [SensitivityRequest(task, tuple(share), samples) for share in shares if share]
