"""A plan fine-tuned again gives the same file: in a fresh process, and in a worker that
ran another trial in between (the worker's threads as the study sets them). Reported
numbers rest on this: a trial re-run on resume, or a plan proposed again, must not land
on the other side of the budget by chance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLAN = {
    "steps": [
        {"technique": "channel_pruning", "params": {"ratio": 0.5, "importance": "l1"}},
        {"technique": "quantization", "params": {"mode": "int8"}},
    ],
    "finetune_epochs": 2,
}
OTHER = {
    "steps": [{"technique": "channel_pruning", "params": {"ratio": 0.3, "importance": "l1"}}],
    "finetune_epochs": 1,
}

WORKER = """
import json, sys
from devicefit.search.executors import _configure_threads
_configure_threads(2)
from devicefit.search.trial import TrialRequest, run_trial
from devicefit.tasks.base import TaskSpec
shas = []
for number, plan in enumerate(json.loads(sys.argv[1])):
    # A subset to fine-tune on: repeatability is what is tested, not how far it recovers.
    task = TaskSpec("digits", finetune_samples=512)
    out = run_trial(TrialRequest(number, plan, task, seed=0, threads=2, keep_keras=False))
    assert out.error is None, out.error
    shas.append([out.tflite_sha256, out.metric, out.finetune.get("drops")])
print(json.dumps(shas))
"""


def _run_in_fresh_process(plans: list[dict]) -> list[list]:
    run = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(plans)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_plan_fine_tuned_again_makes_the_same_file() -> None:
    first, other, again = _run_in_fresh_process([PLAN, OTHER, PLAN])
    (fresh,) = _run_in_fresh_process([PLAN])
    assert other[0] != first[0]  # a different plan makes a different file
    assert first[2] and len(first[2]) >= 1  # it did fine-tune
    assert again == first  # same worker, another trial in between
    assert fresh == first  # another process
