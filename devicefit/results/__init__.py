"""Reading a finished (or running) study: Pareto front, reports, model export.

Everything here works from ``load_study_record``'s plain records, so any Optuna storage
the study lives in gives the same reports.
"""

from devicefit.results.export import export_trial
from devicefit.results.pareto import pareto_front
from devicefit.results.records import StudyRecord, TrialRecord, load_study_record
from devicefit.results.report import print_report, write_report

__all__ = [
    "StudyRecord",
    "TrialRecord",
    "export_trial",
    "load_study_record",
    "pareto_front",
    "print_report",
    "write_report",
]
