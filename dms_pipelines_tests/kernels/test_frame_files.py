"""Values passed between steps come back exactly: frames through Arrow (memory-mapped), everything else through pickle."""

import pickle
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from dms_pipelines.kernels.frame_files import MAGIC, read_frames_file, write_frames_file
from dms_pipelines.orchestration.io_manager import FrameFilesystemIOManager


@dataclass
class Export:
    name: str
    rows: pd.DataFrame
    issues: pd.DataFrame


def _rows(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stock_id": pd.Series([f"S{i}" for i in range(n)], dtype="string"),
            "label": pd.Series(["a", None, "ç", "", "x"][:n] * (n // 5 or 1), dtype="str")[:n],
            "price": pd.Series([1.5, None, 3.0, 4.0, 5.0][:n], dtype="Float64"),
            "doors": pd.Series([3, 5, None, 5, 3][:n], dtype="Int64"),
            "seen": pd.to_datetime(["2026-11-01", None, "2026-11-03", "2026-11-04", "2026-11-05"][:n]),
            "images": pd.Series([["a", "b"], [], None, ["c"], ["d"]][:n], dtype=pd.ArrowDtype(pa.large_list(pa.large_string()))),
        }
    )


def test_frames_and_the_rest_come_back_equal(tmp_path):
    issues = pd.DataFrame({"source_row": [2, None], "reasons": [["x"], ["y", "z"]]})  # Python lists: pickled, not converted
    value = [Export("full.csv", _rows(), issues), {"count": 3, "empty": _rows().iloc[:0]}]
    path = tmp_path / "parsed_exports" / "dealer"
    write_frames_file(value, path)

    assert path.read_bytes().startswith(MAGIC)
    back = read_frames_file(path)
    pd.testing.assert_frame_equal(back[0].rows, value[0].rows)
    pd.testing.assert_frame_equal(back[0].issues, issues)
    assert isinstance(back[0].issues["reasons"].iloc[1], list)
    assert back[1]["count"] == 3
    pd.testing.assert_frame_equal(back[1]["empty"], value[1]["empty"])
    assert [p.name for p in path.parent.iterdir()] == ["dealer"]  # no temporary file left behind


def test_frames_read_back_stay_valid_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "value"
    write_frames_file(_rows(), path)
    first = read_frames_file(path)
    write_frames_file(_rows().iloc[::-1].reset_index(drop=True), path)  # the next run writes a new file and renames it over
    pd.testing.assert_frame_equal(first, _rows())
    assert read_frames_file(path)["stock_id"].tolist() == ["S4", "S3", "S2", "S1", "S0"]


def test_a_file_written_by_dagsters_pickling_io_manager_is_still_read(tmp_path):
    path = tmp_path / "value"
    path.write_bytes(pickle.dumps({"rows": _rows()}))
    pd.testing.assert_frame_equal(read_frames_file(path)["rows"], _rows())


def test_a_value_that_cannot_be_pickled_leaves_the_last_file_in_place(tmp_path):
    path = tmp_path / "value"
    write_frames_file({"rows": _rows()}, path)
    with pytest.raises(Exception):
        write_frames_file({"rows": _rows(), "lock": __import__("threading").Lock()}, path)
    pd.testing.assert_frame_equal(read_frames_file(path)["rows"], _rows())
    assert [p.name for p in tmp_path.iterdir()] == ["value"]


def test_a_downstream_asset_materialised_alone_loads_its_input_from_the_frame_file(tmp_path):
    @dg.asset
    def upstream() -> pd.DataFrame:
        return _rows()

    @dg.asset
    def downstream(upstream: pd.DataFrame) -> int:
        return int(upstream["doors"].sum())

    io_manager = FrameFilesystemIOManager(base_dir=str(tmp_path))
    assert dg.materialize([upstream, downstream], resources={"io_manager": io_manager}).output_for_node("downstream") == 16
    assert (tmp_path / "upstream").read_bytes().startswith(MAGIC)
    alone = dg.materialize([upstream, downstream], selection=["downstream"], resources={"io_manager": io_manager})
    assert alone.success and alone.output_for_node("downstream") == 16
