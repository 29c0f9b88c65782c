"""What a devicefit study stores in Optuna, so reports can be built from any storage.

Study user attributes:
  "devicefit": {"task": label, "metric": {"name", "higher_is_better", "unit"},
                "objectives": [{"name", "direction", "unit", "device"?, "kind"?,
                                "field"?}, ...],
                "max_metric_drop": float, "reference_metric": float | None,
                "devices": {name: {"name", "members": [description, ...]}},
                "version": str,
                "confirmed": {"at", "rounds", "float32": n, "peer": n, "trials": [n, ...],
                              "devices": {name: {"measured_on", "node", "median_ms": {n: ms},
                                                 "vs_float32": {n: speed-up},
                                                 "vs_peer": {n: speed-up}, ...}}}}
  ``confirmed``: the paired rounds of search/confirm.py; a speed-up is {"median", "low",
  "high", "rounds"} (the median of per-round ratios and its 95% interval).
  ``objectives`` is in the order of the trial values; the first is the task metric,
  then one latency objective (ms) per device name, named "latency_<name>" (kind
  "latency", field "median_ms"), then any extra kinds per device name:
  "peak_memory_<name>" (MB), "energy_<name>" (mJ per inference),
  "temperature_<name>" (C), each read from that measurement ``field``.

Trial user attributes:
  "plan": Plan.to_dict(); "plan_short": Plan.short()
  "baseline": "float32" | "float16" | "int8"   (only on the enqueued reference trials)
  "metrics": TrialMetrics.to_dict() (search/trial_metrics.py, one key per field:
             the metric and its drop, size, MACs, parameters, ops, per-layer MACs,
             "latency": {device: Measurement.to_dict()}, notes, timings, where it was
             built, the file's sha256, pooled medians of a file measured before, and
             "finetune": its drops and recovery, keyed as in search/rejection.py)
  "same_as": int                                (the same candidate as that earlier trial:
                                                 the same plan or the same file bytes)
  "fail_reason": str                            (failed trials)
  "pruned_reason": str                          (trials pruned as hopeless: before or
                                                 during fine-tuning, or before conversion
                                                 when they do not fine-tune; "metrics"
                                                 is trial_metrics.pruned_metrics: only
                                                 "finetune", "timings_s" and "notes")
  "retry_of": int                               (a re-run of a trial a dead driver left)
  "recipe": technique name                      (the enqueued one-technique recipes),
            or "combined"                        (the feasible recipes together)
  "profile_plan": name                          (the plans built greedily from the device
                                                 and sensitivity profiles; "plan" is set
                                                 when it is enqueued, and is what is built)
The metric-drop constraint is set with ``trial.set_constraint(CONSTRAINT, value)``
(feasible when <= 0); device limits add one constraint each, keyed by the
measurement field (``peak_memory_mb``, ``energy_per_inference_mj``,
``temperature_after_c``): the worst device's reading minus the limit
(search/scoring.py). Each measurement dict names the pool member that gave it
(``device``), where it ran (``node``) and when (``measured_from``/``measured_until``,
epoch seconds). Artifacts live in ``<results folder>/trials/<number>/``:
``model.tflite``, ``plan.json``, ``metrics.json``.

Results folder file ``inspect.json``: the per-layer report ``devicefit inspect`` prints
(MACs, parameters, block, channel group, techniques that apply and why others do not).
Results folder file ``device_profile.json``: {device: {"float32": profile, "int8": profile}},
a file that did not convert or profile being {"unavailable": why}, a profile being
spaces/layer_times.py's LayerTimes as a dict ("layers", "blocks", "groups", "unmapped":
name -> ms per run; "run_ms") plus "median_ms".
Results folder file ``sensitivity.json``: {"key": what the profile was made for
("granularity", "samples", "techniques"), "points": spaces/sensitivity.py's
SensitivityPoint as dicts, "complete": bool, "seconds": time spent on it, summed over
resumes}.
Results folder file ``study.json``: {"study_name", "storage" (null = the folder's
study.db), "config": StudyConfig as a dict, "created": ISO time}.
"""

STUDY_KEY = "devicefit"
PLAN = "plan"
PLAN_SHORT = "plan_short"
BASELINE = "baseline"
METRICS = "metrics"
FAIL_REASON = "fail_reason"
PRUNED_REASON = "pruned_reason"
PROFILE_PLAN = "profile_plan"  # the greedy plans built from the profiles (search/greedy_plan.py)
RETRY_OF = "retry_of"
SAME_AS = "same_as"
CONFIRMED = "confirmed"
RECIPE = "recipe"
CONSTRAINT = "metric_drop"
STUDY_FILE = "study.json"
INSPECT_FILE = "inspect.json"  # devicefit inspect's per-layer report of the model searched
# Where the untouched model's time goes on each device (results/time_profile.py)
DEVICE_PROFILE_FILE = "device_profile.json"
# What each unit gives up to each technique, without fine-tuning (search/sensitivity_profiles.py)
SENSITIVITY_FILE = "sensitivity.json"
DB_FILE = "study.db"
TRIALS_DIR = "trials"
