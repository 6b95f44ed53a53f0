"""scripts/measure_codec.py's command line: a training run's checkpoint is named COMPONENT=DIR (Chapter 3)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("measure_codec", ROOT / "scripts" / "measure_codec.py")
measure_codec = importlib.util.module_from_spec(spec)
spec.loader.exec_module(measure_codec)


def test_run_spec_splits_component_and_folder():
    assert measure_codec._run_spec("magnitude-codec=runs/a=b") == ("magnitude-codec", "runs/a=b")


@pytest.mark.parametrize("bad", ["runs/magnitude-codec-tiny", "=runs/x", "magnitude-codec="])
def test_bad_codec_run_is_one_error_line(bad, capsys):
    assert measure_codec.main(["--codec-run", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --codec-run wants COMPONENT=DIR")


def test_missing_run_folder_is_one_error_line(tmp_path, capsys):
    assert measure_codec.main(["--codec-run", f"magnitude-codec={tmp_path}", "--clips", "1", "--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no magnitude-codec checkpoint" in err[0]
