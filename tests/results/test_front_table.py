from devicefit.results.pareto import pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.table import fmt_num, fmt_signed, front_rows, front_table


def test_rows_sorted_by_first_device_with_device_columns(make_study):
    fake = make_study(devices=["pi", "laptop"])
    fake.add(97.0, {"pi": 9.0, "laptop": 2.0}, baseline="float32")
    fake.add(96.5, {"pi": 3.0, "laptop": 1.0})
    fake.add(96.8, {"pi": 6.0, "laptop": 0.5})
    rec = load_study_record(fake.folder)
    rows = front_rows(rec, pareto_front(rec))

    assert rows.headers[3:7] == [
        "pi latency ms [95% CI] (p90)",
        "pi speedup [95% CI]",
        "laptop latency ms [95% CI] (p90)",
        "laptop speedup [95% CI]",
    ]
    assert rows.numbers == [1, 2, 0]  # fastest on pi first
    assert rows.rows[0][:7] == [
        "1",
        "96.50",
        "-0.50",
        "3.00 (3.30)",
        "3.00×",
        "1.00 (1.10)",
        "2.00×",
    ]
    assert rows.rows[2][0] == "0 (float32)" and rows.baseline == [None, None, "float32"]
    table = front_table(rec, pareto_front(rec))
    assert table.row_count == 3 and table.rows[2].style == "cyan"


def test_number_formatting():
    assert fmt_num(None) == "—" and fmt_num(97.0) == "97.00" and fmt_num(0.00123) == "0.00123"
    assert fmt_signed(0.0) == "+0.00" and fmt_signed(-0.004) == "-0.004"
