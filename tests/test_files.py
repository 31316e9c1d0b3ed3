"""Writes that a crash cannot leave half done (checkpoints, results.json, metrics.csv, SS-ORL datasets)."""

import json

import numpy as np
import pytest

from embodied_rl.files import atomic_write, write_json


def test_a_write_that_fails_part_way_leaves_the_previous_file_and_no_partial_one(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("previous")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as f:
        f.write("half of the new")
        raise KeyboardInterrupt  # a Ctrl-C (or any error) in the middle of writing
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_finished_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "arrays.npz"
    with atomic_write(path, "wb") as f:
        np.savez(f, x=np.arange(3))
    assert np.load(path)["x"].tolist() == [0, 1, 2]
    write_json(tmp_path / "r.json", {"mse": np.float32(0.5), "steps": [np.int64(1), 2], "ok": np.bool_(True)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"mse": 0.5, "steps": [1, 2], "ok": True}
    with pytest.raises(TypeError, match="ndarray is not JSON serialisable"):  # not silently a float or a string
        write_json(tmp_path / "r.json", {"actions": np.zeros(3)})
    assert json.loads((tmp_path / "r.json").read_text())["ok"] is True  # the failed write left the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz", "r.json"]
