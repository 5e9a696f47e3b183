import json
import sys

from mlops.bench import pipeline


def test_training_at_scale_reports_time_and_memory(tmp_path):
    result = pipeline.train_at_scale(tmp_path, 3_000)
    assert result["rows"] == 3_000
    assert result["train_rows"] == 2_400
    assert result["seconds"] > 0
    assert 50 < result["peak_rss_mib"] < 4_000
    metadata = json.loads((tmp_path / "models/candidate/metadata.json").read_text())
    assert metadata["train_rows"] == 2_400


def test_copy_project_keeps_modification_times(tmp_path):
    pipeline.copy_project(tmp_path)
    for name in pipeline.PROJECT_FILES:
        original = (pipeline.ROOT / name).stat().st_mtime_ns
        assert (tmp_path / name).stat().st_mtime_ns == original
    assert (tmp_path / "data/raw/SHA256SUMS").is_file()


def test_timed_measures_wall_and_cpu_time_of_the_command(tmp_path):
    wall, cpu = pipeline.timed([sys.executable, "-c", "sum(range(3_000_000))"], tmp_path)
    assert wall > 0
    assert cpu > 0
