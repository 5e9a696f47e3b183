from mlops.bench import dvc
from mlops.config import load_config


def test_measures_what_data_raw_dvc_adds_to_a_no_op_make_data():
    result = dvc.measure(load_config("params.yaml"), pairs=1)
    assert result["make_data_goal_seconds"] == 1.0
    assert len(result["runs"]["make_data_noop_dvc_seconds"]) == 1
    assert result["check_seconds"] > 0
    assert result["data_remote_seconds"] > 0
    assert isinstance(result["make_data_added_seconds"], float)
