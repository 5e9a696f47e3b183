import json

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


def test_make_all_is_compared_with_one_process_doing_the_same_work():
    result = pipeline.compare(pairs=1)
    assert result["runs"]["make_all_clean_seconds"] == [result["make_all_clean_seconds"]]
    assert result["runs"]["one_process_seconds"] == [result["one_process_seconds"]]
    assert result["ratio"] == round(
        result["make_all_clean_seconds"] / result["one_process_seconds"], 3
    )
    assert result["within_goal"] == (result["ratio"] <= pipeline.GOAL_RATIO)
    assert result["make_all_clean_cpu_seconds"] > 0
    assert result["one_process_cpu_seconds"] > 0
    assert 0 < result["make_all_noop_seconds"] < result["make_all_clean_seconds"]
    assert 0.5 < result["accuracy"] < 1
