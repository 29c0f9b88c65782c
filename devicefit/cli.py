"""Command line: one verb per subcommand; parses, then calls the package.

Exit codes: 0 ok, 1 the run failed, 2 bad usage or input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from devicefit.config_flags import add_study_flags, study_flag_values
from devicefit.errors import UsageError

FORMATS = ("json", "csv", "markdown")  # devicefit report --format

if TYPE_CHECKING:  # rich is imported only by the verbs that print with it
    from rich.console import Console

    from devicefit.evaluators.base import Measurement

EXAMPLES = {
    "search": "devicefit search --task digits --trials 30 --seed 0\n"
    "  devicefit search --model net.keras --data data.npz --metric accuracy --trials 100\n"
    "  devicefit search --config study.toml --workers 2",
    "resume": "devicefit resume results/digits-20261125-120000 --trials 50\n"
    "  devicefit resume --study digits-1 --storage postgresql://db/optuna --ray auto",
    "report": "devicefit report results/digits-20261125-120000\n"
    "  devicefit report results/digits-20261125-120000 --format markdown >> pr.md\n"
    "  devicefit report results/digits-20261125-120000 --serve --port 8000\n"
    "  devicefit report --compare results/on-pi results/on-laptop --out compare.html",
    "export": "devicefit export results/digits-20261125-120000 --trial 17 --out shipped/\n"
    "  devicefit export results/digits-20261125-120000 --pareto --out front/",
    "benchmark": "devicefit benchmark model.tflite --threads 1 --min-seconds 2",
    "devices": "devicefit devices check --device pi=http://10.0.0.7:8765 --device local",
    "inspect": "devicefit inspect --model net.keras --input-shape 1,224,224,3\n"
    "  devicefit inspect --task sr",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one line
        """Raise instead of printing usage and exiting, so ``main`` prints one line and exits 2.

        Args:
            message: argparse's description of the bad command line.

        Returns:
            Never returns.

        Raises:
            UsageError: always, with ``message``.
        """
        raise UsageError(message)


def _sub(subs: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="example:\n  " + EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``devicefit`` command line: one subcommand per verb.

    Returns:
        The parser; it raises UsageError (exit code 2) instead of exiting on bad usage.
    """
    parser = _Parser(
        prog="devicefit",
        description="Compress Keras models for real devices.",
        epilog="on each target device: devicefit agent --help",
    )
    subs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add in (_add_search, _add_resume, _add_report, _add_export, _add_measuring, _add_inspect):
        add(subs)
    return parser


def _add_search(subs: Any) -> None:
    s = _sub(subs, "search", "Start a multi-objective compression search.")
    s.add_argument("--config", help="TOML study file; flags override its values")
    add_study_flags(s)  # one per StudyConfig field (config.py)


def _add_resume(subs: Any) -> None:
    r = _sub(subs, "resume", "Continue a study until it has the requested complete trials.")
    r.add_argument("folder", nargs="?", help="the study's results folder")
    r.add_argument("--trials", type=int, help="new target of complete trials")
    r.add_argument("--workers", type=int)
    r.add_argument("--storage", help="Optuna storage URL if not the folder's study.db")
    r.add_argument("--study", help="resume by name from --storage (no folder given)")
    r.add_argument("--results", help="with --study: the shared results folder (default: results)")
    r.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS", help="trials on Ray")
    r.add_argument(
        "--cpus-per-trial", type=int, dest="cpus_per_trial", help="training threads per trial"
    )


def _add_report(subs: Any) -> None:
    p = _sub(subs, "report", "Print the Pareto front; write report.html, pareto.json, trials.csv.")
    p.add_argument("folder", nargs="?", help="the study's results folder")
    p.add_argument("--storage", help="Optuna storage URL if not the folder's study.db")
    p.add_argument(
        "--format", choices=FORMATS, help="print the report for scripts instead of the table"
    )
    p.add_argument(
        "--compare", nargs="+", metavar="FOLDER", help="overlay the fronts of several studies"
    )
    p.add_argument("--out", help="with --compare: the HTML file to write (default compare.html)")
    p.add_argument(
        "--confirm",
        action="store_true",
        help="first measure the front, the float32 baseline and the best peer recipe again, "
        "in paired rounds on the study's devices, and report those speed-ups",
    )
    p.add_argument("--serve", action="store_true", help="serve the report on 127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="with --serve (0: any free port)")


def _add_export(subs: Any) -> None:
    e = _sub(subs, "export", "Copy a trial's TFLite and Keras models out with a model card.")
    e.add_argument("folder")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int)
    which.add_argument("--pareto", action="store_true", help="every front member, one folder each")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--storage", help="Optuna storage URL if not the folder's study.db")


def _add_measuring(subs: Any) -> None:
    b = _sub(subs, "benchmark", "Measure one TFLite file the way a search does.")
    b.add_argument("file")
    b.add_argument("--device", default="local")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--min-runs", type=int, default=50, dest="min_runs")
    b.add_argument("--min-seconds", type=float, default=1.0, dest="min_seconds")
    b.add_argument("--json", action="store_true", help="print the measurement as JSON")

    d = _sub(subs, "devices", "Check devices: info, reachability and a reference measurement.")
    d.add_argument("action", choices=["check"])
    d.add_argument("--device", action="append", dest="devices", metavar="[NAME=]SPEC")
    d.add_argument("--threads", type=int, default=1)


def _add_inspect(subs: Any) -> None:
    i = _sub(subs, "inspect", "Show per layer the MACs, channel groups and applicable techniques.")
    i.add_argument("--task", help="built-in task: digits or sr")
    i.add_argument("--model", help="a .keras, .h5 file or a SavedModel folder")
    i.add_argument(
        "--input-shape", dest="input_shape", help="shape the file ships with, e.g. 1,224,224,3"
    )
    i.add_argument("--techniques", help="comma-separated subset (default: all)")
    i.add_argument("--json", action="store_true", help="print the per-layer report as JSON")
    i.add_argument(
        "--device",
        action="append",
        dest="devices",
        metavar="[NAME=]SPEC",
        help="also measure where the time goes on this device (per-op profile), repeatable",
    )
    i.add_argument("--threads", type=int, default=1, help="threads for --device measurements")
    i.add_argument(
        "--sensitivity",
        action="store_true",
        help="also score each technique's mild/medium/strong setting on each layer alone, "
        "without fine-tuning, on validation data (built-in tasks: --task)",
    )


def _search(args: argparse.Namespace, console: Console) -> int:
    from devicefit.config import build_config
    from devicefit.search.run import start_search

    flags = study_flag_values(args)
    flags["storage"] = _storage(args.storage)
    return start_search(build_config(args.config, flags), console)


def _resume(args: argparse.Namespace, console: Console) -> int:
    from devicefit.search.run import resume_search

    storage = _storage(args.storage)
    if args.folder is None:
        from devicefit.search.study import locate_study_folder

        if not args.study or not storage:
            raise UsageError("resume: give the results FOLDER, or --study NAME with --storage URL")
        folder = locate_study_folder(args.study, storage, args.results)
    elif args.study or args.results:
        raise UsageError("resume: give either FOLDER or --study/--results, not both")
    else:
        folder = Path(args.folder)
    return resume_search(
        folder, console, storage, args.trials, args.workers, args.ray, args.cpus_per_trial
    )


def _storage(flag: str | None) -> str | None:
    from devicefit.search.storages import given_storage

    return given_storage(flag)


def _report(args: argparse.Namespace, console: Console) -> int:
    from devicefit.results.records import load_study_record
    from devicefit.results.report import formatted, print_report, write_report

    if args.compare:
        return _compare(args, console)
    if not args.folder:
        raise UsageError("report: give a results folder, or --compare FOLDER FOLDER ...")
    if args.out:
        raise UsageError("--out: only with --compare (a study's report goes into its folder)")
    folder, storage = Path(args.folder), _storage(args.storage)
    record = load_study_record(folder, storage)
    if args.confirm:
        from devicefit.search.confirm import confirm_folder

        record = confirm_folder(folder, storage, _stderr_console() if args.format else console)

    def rebuild() -> None:
        fresh = load_study_record(folder, storage)
        write_report(fresh, folder, live=fresh.running)

    # The port first: a taken port must fail before anything is written.
    server = _report_server(args, folder, "report.html", rebuild)
    # With --format, stdout carries only the requested text; everything else goes to stderr.
    notes = _stderr_console() if args.format else console
    if args.format:
        sys.stdout.write(formatted(record, args.format))
    else:
        print_report(record, console)
    try:
        # Seconds for studies of thousands of trials and many objectives: say what is going on.
        with notes.status(f"writing the report of {len(record.trials)} trials"):
            paths = write_report(record, folder, live=record.running)
        for path in paths.values():
            notes.print(f"wrote {path}")
    except OSError as exc:
        if server is not None:
            server.server_close()
        raise UsageError(f"{folder}: cannot write the report files ({exc.strerror})") from None
    return _serve(server, "report.html", notes)


def _compare(args: argparse.Namespace, console: Console) -> int:
    from devicefit.results.comparison import (
        compare_studies,
        comparison_json,
        comparison_table,
        reference_text,
        write_comparison,
    )
    from devicefit.results.records import load_study_record

    if args.folder:
        raise UsageError(f"{args.folder}: give the folders after --compare, not before it")
    if args.format not in (None, "json"):
        raise UsageError(f"--format {args.format}: --compare prints a table or json")
    storage = _storage(args.storage)
    comparison = compare_studies([load_study_record(Path(f), storage) for f in args.compare])
    out = Path(args.out or "compare.html")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give the HTML file to write")
    server = _report_server(args, out.parent.resolve(), out.name, None)
    notes = _stderr_console() if args.format else console
    if args.format:
        sys.stdout.write(comparison_json(comparison))
    else:
        console.print(comparison_table(comparison))
        console.print(reference_text(comparison))
    try:
        notes.print(f"wrote {write_comparison(comparison, out)}")
    except OSError as exc:
        if server is not None:
            server.server_close()
        raise UsageError(f"--out {out}: cannot write ({exc.strerror})") from None
    return _serve(server, out.name, notes)


def _report_server(args: argparse.Namespace, folder: Path, page: str, rebuild: Any) -> Any:
    if not args.serve:
        return None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: must be 0 (any free port) to 65535")
    from devicefit.results.serve import make_server

    return make_server(folder, page, args.port, rebuild)


def _serve(server: Any, page: str, notes: Console) -> int:
    if server is None:
        return 0
    from devicefit.results.serve import serve_forever

    return serve_forever(server, lambda url: notes.print(f"serving {url}{page} (Ctrl-C stops)"))


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, width=160)


def _export(args: argparse.Namespace, console: Console) -> int:
    from devicefit.results.export import export_front, export_trial
    from devicefit.results.records import load_study_record

    record = load_study_record(Path(args.folder), _storage(args.storage))
    if args.pareto:
        paths = export_front(record, Path(args.out))
    else:
        paths = export_trial(record, args.trial, Path(args.out))
    for path in paths:
        console.print(f"wrote {path}")
    return 0


def _measurement_line(m: Measurement) -> str:
    """One line of what ``devicefit benchmark`` measured."""

    def shown(value: float | None, unit: str, digits: int = 3) -> str:
        """A value with its unit, or "n/a" when it was not measured.

        Args:
            value: the number, or None.
            unit: its unit, e.g. "ms".
            digits: decimals shown.

        Returns:
            e.g. "2.210 ms".
        """
        return "n/a" if value is None else f"{value:.{digits}f} {unit}"

    interval = (
        f" [95% CI {m.median_low_ms:.3f}–{m.median_high_ms:.3f}]"
        if m.median_low_ms is not None and m.median_high_ms is not None
        else ""
    )
    disturbed = (
        f"; host: steal {m.steal_pct:.1f}%, others on its cores {m.core_shared_pct:.1f}%, "
        f"elsewhere {m.other_load_cpus:.2f} CPUs"
        + (f", measured {m.remeasured + 1} times" if m.remeasured else "")
        if m.steal_pct is not None
        and m.core_shared_pct is not None
        and m.other_load_cpus is not None
        else ""
    )
    return (
        f"median {m.median_ms:.3f} ms{interval}, "
        f"p90 {shown(m.p90_ms, 'ms')}, min {m.min_ms:.3f} ms, std {m.std_ms:.3f} ms "
        f"over {m.count} runs, {m.threads} thread(s), "
        f"peak memory {shown(m.peak_memory_mb, 'MB', 1)} ({m.runtime}){disturbed}"
    )


def _benchmark(args: argparse.Namespace, console: Console) -> int:
    import json

    from devicefit.errors import DeviceUnavailable, TrialFailed
    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.evaluators.devices import make_evaluator

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"FILE: not found: {path}")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UsageError(f"FILE: {path} is not a TFLite flatbuffer")
    if args.threads < 1 or args.min_runs < 1 or args.min_seconds < 0:
        raise UsageError("--threads and --min-runs must be >= 1, --min-seconds >= 0")
    evaluator = make_evaluator(args.device)
    spec = BenchmarkSpec(args.threads, 5, args.min_runs, args.min_seconds)
    try:
        m = evaluator.measure(data, spec)
    except (TrialFailed, DeviceUnavailable) as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 1
    if args.json:
        print(json.dumps(m.to_dict()))
    else:
        console.print(f"{path.name} on {args.device}: {_measurement_line(m)}", markup=False)
    return 0


def _devices(args: argparse.Namespace, console: Console) -> int:
    from devicefit.evaluators.check import check_devices, print_checks

    if args.threads < 1:
        raise UsageError("--threads: must be at least 1")
    checks = check_devices(args.devices or ["local"], args.threads)
    print_checks(checks, console)
    return 0 if all(c.error is None for c in checks) else 1


def _inspect(args: argparse.Namespace, console: Console) -> int:
    import dataclasses
    import json

    from devicefit.spaces import all_techniques, get_technique
    from devicefit.spaces.inspection import inspect_model, print_inspection

    model, shape = _inspect_target(args)
    names = [t.strip() for t in (args.techniques or "").split(",") if t.strip()]
    techniques = [get_technique(n) for n in names] if names else all_techniques()
    reports = inspect_model(model, shape, techniques)
    notes = _profile_devices(args, model, shape, reports)
    metric_name = _add_sensitivity(args, model, shape, techniques, reports)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in reports]))
    else:
        print_inspection(reports, console)
        for note in notes:
            console.print(note)
        if metric_name:
            from devicefit.spaces.inspection import print_sensitivity

            print_sensitivity(reports, metric_name, console)
    return 0


def _add_sensitivity(
    args: argparse.Namespace,
    model: Any,
    shape: tuple[int, ...],
    techniques: list[Any],
    reports: list[Any],
) -> str | None:
    """Score the sensitivity settings on the task's validation data; the metric's name."""
    if not args.sensitivity:
        return None
    if not args.task:
        raise UsageError("--sensitivity: needs validation data; use it with --task")
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.inspection import add_sensitivity
    from devicefit.spaces.sensitivity import sensitivity_profile
    from devicefit.tasks import TaskSpec, load_task

    task = load_task(TaskSpec(builtin=args.task))
    x, y = task.data.x_val[:256], task.data.y_val[:256]
    context = ConvertContext(shape, task.calibration)
    points = sensitivity_profile(model, techniques, x, y, task.metric, context)
    add_sensitivity(reports, points)
    return task.metric.name


def _profile_devices(
    args: argparse.Namespace, model: Any, shape: tuple[int, ...], reports: list[Any]
) -> list[str]:
    """Measure the float32 file on each ``--device`` with a per-op profile; notes to print."""
    if not args.devices:
        return []
    if args.threads < 1:
        raise UsageError(f"--threads: must be >= 1, got {args.threads}")
    from devicefit.errors import DeviceUnavailable, TrialFailed
    from devicefit.evaluators.devices import device_pools, make_evaluator
    from devicefit.spaces.convert import to_tflite
    from devicefit.spaces.device_profile import device_profile
    from devicefit.spaces.inspection import add_device_times

    tflite = to_tflite(model, shape)
    notes = []
    for name, specs in device_pools(tuple(args.devices)).items():
        device = make_evaluator(specs[0], name)
        try:
            times, median = device_profile(model, shape, device, args.threads, tflite)
        except (DeviceUnavailable, TrialFailed) as exc:
            notes.append(f"{name}: not profiled: {exc}")
            continue
        add_device_times(reports, name, times)
        notes.append(
            f"{name}: float32 file, median {median:.3f} ms; per-op profile: the ops took "
            f"{times.total_ms:.3f} ms of each {times.run_ms:.3f} ms run "
            f"({args.threads} thread{'s' if args.threads > 1 else ''})"
        )
    return notes


def _inspect_target(args: argparse.Namespace) -> tuple[Any, tuple[int, ...]]:
    if bool(args.task) == bool(args.model):
        raise UsageError("inspect: give either --task or --model")
    shape = _parse_shape(args.input_shape) if args.input_shape else None
    if args.task:
        from devicefit.tasks import load_task
        from devicefit.tasks.base import TaskSpec

        task = load_task(TaskSpec(builtin=args.task))
        return task.model, shape or task.input_shape
    from devicefit.tasks.user import load_user_model

    model = load_user_model(args.model)
    declared = tuple(model.inputs[0].shape)
    if shape is not None and len(model.inputs) > 1:
        raise UsageError(
            f"--input-shape: {args.model} has several inputs, each of a fixed size; leave "
            "--input-shape out"
        )
    if shape is None:
        if any(d is None for d in declared[1:]):
            raise UsageError(
                f"--input-shape: the model takes {declared}; give the shape it ships with"
            )
        shape = (1, *declared[1:])
    return model, shape


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--input-shape: expected integers like 1,32,32,3, got {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"--input-shape: every size must be >= 1, got {text!r}")
    return shape


VERBS = {
    "search": _search,
    "resume": _resume,
    "report": _report,
    "export": _export,
    "benchmark": _benchmark,
    "inspect": _inspect,
    "devices": _devices,
}


def main(argv: list[str] | None = None) -> int:
    """Run one ``devicefit`` command.

    ``devicefit agent`` is handed to its own stdlib-only command line; every other verb
    needs the search extra (rich, Optuna, TensorFlow).

    Args:
        argv: the arguments after ``devicefit``; default ``sys.argv[1:]``.

    Returns:
        The exit code: 0 ok, 1 the run failed, 2 bad usage or input (the message printed
        to stderr), 130 interrupted. An interrupted search or resume exits the process with
        130 at once instead of returning.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        # The agent runs on devices with only devicefit[agent] installed (no rich,
        # TensorFlow or Optuna): it has its own stdlib-only command line.
        from devicefit.deploy.agent_cli import main as agent_main

        return agent_main(argv[1:])
    missing = [name for name in ("rich", "optuna", "tensorflow") if find_spec(name) is None]
    if missing:
        print(
            f"devicefit: error: this command needs the search extra (missing: "
            f"{', '.join(missing)}); install it with: pip install 'devicefit[search]'",
            file=sys.stderr,
        )
        return 2
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Logs and pipes: rich's 80-column default cuts tables into unreadable wraps.
        console = Console(width=160)
    try:
        args = build_parser().parse_args(argv)
        code = VERBS[args.verb](args, console)
        if code == 130 and args.verb in ("search", "resume"):
            # Interrupted: the study is already consistent (running trials recorded for
            # re-run). Leave now rather than wait for measurement threads still blocked
            # on a device.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return code
    except UsageError as exc:
        # Plain print: one line, never wrapped to the terminal width.
        print(f"devicefit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
