"""Optuna's dashboard opens a devicefit study as it is, objectives named."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from devicefit.config import StudyConfig
from devicefit.evaluators.metrics import get_metric
from devicefit.search.study import create_study


def _get(app, path: str) -> tuple[str, dict]:  # noqa: ANN001
    status: dict[str, str] = {}

    def start(code: str, headers: list, exc_info: object = None) -> None:
        status["code"] = code

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    body = b"".join(app(environ, start))
    return status["code"], json.loads(body)


def test_dashboard_lists_the_study_and_its_trials(tmp_path: Path) -> None:
    from optuna.storages import RDBStorage
    from optuna_dashboard import wsgi

    config = StudyConfig(task="digits", devices=("pi=http://10.0.0.2:8765", "local"))
    study = create_study(config, tmp_path / "dash", get_metric("accuracy"), 1.0, "digits")
    trial = study.ask()
    trial.set_constraint("metric_drop", -0.5)
    study.tell(trial, [97.5, 1.2, 2.3])

    app = wsgi(RDBStorage(f"sqlite:///{tmp_path / 'dash' / 'study.db'}"))
    code, studies = _get(app, "/api/studies")
    assert code.startswith("200")
    summary = next(s for s in studies["study_summaries"] if s["study_name"] == "dash")
    code, detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert code.startswith("200")
    assert detail["directions"] == ["maximize", "minimize", "minimize"]
    assert detail["objective_names"] == ["accuracy", "latency_pi", "latency_local"]
    assert [t["values"] for t in detail["trials"]] == [[97.5, 1.2, 2.3]]
