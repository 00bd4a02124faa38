"""The typed summary row: one record from which the CSV, the tables and the definitions derive,
and old run folders that still load."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd

from showcase import ROOT, coordinator, report, roofline, views
from showcase.bench import compare, tables
from showcase.bench import run as bench
from showcase.bench.folder import read_tables
from showcase.bench.tables import Summary
from showcase.settings import ServerSettings

OLD_RUN = Path(__file__).parent / "data" / "run-b4580ac"  # written by b4580ac, before the typed row


def test_the_readme_and_the_tab_define_every_column_as_the_record_does():
    table = tables.columns_markdown()
    assert table in (ROOT / "README.md").read_text()
    assert table in views.DEFINITIONS
    names = [c.name for c in tables.COLUMNS]
    assert all(f"`{n}`" in table for n in names) and len(set(names)) == len(names)
    assert all(c.meaning and (c.header is None or c.header.strip()) for c in tables.COLUMNS)


def test_the_column_names_on_disk_are_the_same_as_before_the_typed_row():
    written = pd.read_csv(OLD_RUN / "summary.csv")
    assert set(written.columns) == set(tables.FIELDS)
    requests = pd.read_csv(OLD_RUN / "requests.csv")
    assert list(requests.columns) == list(tables.RequestRow.__annotations__)  # in the same order
    timeline = pd.read_csv(OLD_RUN / "timeline.csv")
    assert set(timeline.columns) <= set(tables.TimelineRow.__annotations__)


def test_a_folder_written_before_the_typed_row_still_loads_draws_and_reports(tmp_path):
    folder = tmp_path / OLD_RUN.name
    shutil.copytree(OLD_RUN, folder)
    table, requests, timeline = read_tables(folder)
    assert not timeline.empty
    rows = [Summary.of(r) for r in table.to_dict("records")]
    assert [r.point for r in rows] == [0, 1, 2, 3] and [r.repeat for r in rows] == [0, 0, 1, 1]
    assert all(r.completed == 6 and r.failed == 0 and r.mean_ttft_ms > 0 for r in rows)
    again = pd.DataFrame([r.row() for r in rows])
    for name in tables.NUMERIC:  # read back as it was written, NaN for NaN
        a, b = pd.to_numeric(table[name]), pd.to_numeric(again[name])
        assert ((a == b) | (a.isna() & b.isna())).all(), name
    meta = bench.read_meta(folder)
    assert meta.status is bench.RunStatus.COMPLETED and len(meta.points) == 4 and not requests.empty
    v, refused = views.load_views([folder], [folder / "summary.csv"], roofline.gpu("A10G"),
                                  views.ServedModel(None, "none"))
    assert not refused and len(v.summary) == 4 and "mean TTFT ms" in v.summary.columns
    assert "<h2>Definitions</h2>" in report.render(folder)
    uploaded = coordinator.load_summary(folder / "summary.csv", "earlier")
    assert len(uploaded) == 4 and uploaded["mean_ttft_ms"].gt(0).all()


def test_a_row_read_back_takes_defaults_for_what_it_lacks_and_drops_what_it_does_not_know():
    row = Summary.of({"point": 3.0, "arm": math.nan, "max_concurrency": math.nan, "completed": 2.0, "other": 1})
    assert row.point == 3 and row.arm == "" and row.max_concurrency is None and row.completed == 2
    assert math.isnan(row.mean_ttft_ms) and row.request_rate == math.inf and row.flags == ""
    assert Summary.of(row.row()) == Summary.of(Summary.of(row.row()).row())


def test_an_earlier_run_json_with_its_bound_as_it_was_still_reads():
    smoke = roofline.ModelShape.load(str(ROOT / "assets" / "smoke-qwen3"))
    gpu = roofline.gpu("A10G")
    old = {"shape": smoke, "device": gpu, "dtype": "bfloat16"}  # before RunMeta.bound was a Roofline
    meta = bench.RunMeta.model_validate({"preset": "p", "points": [], "bound": old})
    assert meta.bound == roofline.Roofline(smoke, gpu, 1, "bfloat16")
    assert bench.RunMeta.model_validate_json(meta.model_dump_json()).bound == meta.bound


def test_an_earlier_run_json_with_its_server_settings_as_a_dict_reads_them_as_the_one_settings_type():
    # As `dataclasses.asdict(ServerSettings)` wrote them, with a field a later version dropped and
    # without one it added: both the run's and an experiment arm's.
    written = {"model": "/m", "served_model_name": "m", "max_model_len": 4096, "max_num_seqs": 8,
               "dtype": "bfloat16", "enforce_eager": False, "a_dropped_field": 1}
    meta = bench.RunMeta.model_validate({"preset": "p", "points": [], "server_settings": written})
    assert meta.server_settings == ServerSettings(model="/m", served_model_name="m", max_model_len=4096,
                                                  max_num_seqs=8, dtype="bfloat16")
    assert bench.RunMeta.model_validate_json(meta.model_dump_json()).server_settings == meta.server_settings
    arm = compare.ArmRecord.model_validate({"name": "a", "server_settings": written})
    assert arm.server_settings == meta.server_settings


def test_a_table_handed_back_from_memory_reads_as_the_file_it_was_written_to(tmp_path):
    rows = [Summary(point=0, completed=2, mean_ttft_ms=1.5).row(), Summary(point=1, flags="stopped").row()]
    from showcase.bench.folder import RunFolder, read_table, table

    folder = RunFolder(tmp_path, "x")
    folder.write_tables({"summary.csv": rows})
    on_disk, in_memory = read_table(folder.path, "summary.csv"), table("summary.csv", rows)
    assert list(on_disk.columns) == list(in_memory.columns)
    for name in on_disk.columns:
        a, b = on_disk[name], in_memory[name]
        assert ((a == b) | (a.isna() & b.isna())).all(), name
