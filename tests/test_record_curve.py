"""scripts/record_curve.py: a run's validation rows kept in the book, legs chained in CPU time (Chapter 3)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("record_curve", ROOT / "scripts" / "record_curve.py")
record_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_curve)


def fake_run(folder: Path, minutes: list[float]) -> Path:
    folder.mkdir()
    lines = []
    for i, m in enumerate(minutes):
        lines.append(json.dumps({"step": 10 * i + 5, "loss": 1.0}))  # a training row: skipped
        lines.append(json.dumps({"step": 10 * (i + 1), "validation": {"note_f1": 0.1 * i, "cpu_minutes": m}}))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_legs_chain_their_cpu_minutes(tmp_path):
    out = tmp_path / "curve.json"
    assert record_curve.main([str(fake_run(tmp_path / "a", [1.0, 2.0])), "--command", "a", "--json", str(out)]) == 0
    assert record_curve.main([str(fake_run(tmp_path / "b", [0.5])), "--command", "b", "--json", str(out), "--after", str(out)]) == 0
    assert record_curve.main([str(fake_run(tmp_path / "c", [4.0])), "--command", "c", "--json", str(out), "--after", str(out)]) == 0
    legs = json.loads(out.read_text())["legs"]
    assert [leg["command"] for leg in legs] == ["a", "b", "c"]
    assert [r["step"] for r in legs[0]["rows"]] == [10, 20]
    assert [leg["rows"][-1]["cpu_minutes_total"] for leg in legs] == [2.0, 2.5, 6.5]


def test_a_run_without_a_log_is_one_error_line(tmp_path, capsys):
    assert record_curve.main([str(tmp_path), "--command", "x", "--json", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no log.jsonl")
