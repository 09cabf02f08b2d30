"""kdist.qlib.write_qlib: stored bars in qlib's on-disk layout (calendars, instruments,
features/<code>/<field>.<freq>.bin), checked byte by byte with numpy here and read back by
qlib itself in .venv-qlib (tests/interop/qlib.txt; marked interop).

The universe: six A-shares of the three exchanges with the synthetic provider's dividends,
bonus shares and splits (hfq derived from raw bars and factors), one more with four days
deleted (gaps), one imported without corporate actions (raw, factor 1) and one with vendor
hfq bars only (factor unknown: NaN).
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.errors import UsageError
from kdist.qlib import FIELDS, JOURNAL, qlib_code, qlib_freq, write_qlib

UNIVERSE = ["600000.SH", "600519.SH", "000001.SZ", "000002.SZ", "300750.SZ", "830799.BJ"]
GAPPY = "600036.SH"
RAW_ONLY = "000651.SZ"
VENDOR = "601318.SH"
GAPS = ["2022-03-08", "2022-03-09", "2022-11-15", "2023-02-01"]
START, MIDDLE, END = "2022-01-01", "2023-06-30", "2023-12-31"
READER = Path(__file__).parent / "interop" / "qlib_read.py"


def _ingest(db, start, end):
    for symbols, kwargs in ((UNIVERSE + [GAPPY], {}), ([RAW_ONLY], {"actions": False}),
                            ([VENDOR], {"adjust": "hfq"})):
        report = kdist.ingest(symbols, start=start, end=end, db=db, client="sync",
                              progress=False, **kwargs)
        assert report.status == "done", report
    with duckdb.connect(db) as con:
        con.execute("DELETE FROM kline WHERE symbol = ? AND ts::DATE IN (SELECT "
                    "unnest(?::DATE[]))", [GAPPY, GAPS])


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two databases: the universe to the middle of 2023, and to its end."""
    root = tmp_path_factory.mktemp("qlib")
    half, full = str(root / "half.duckdb"), str(root / "full.duckdb")
    _ingest(half, START, MIDDLE)
    _ingest(full, START, END)
    return half, full


@pytest.fixture
def half(stores, tmp_path):
    """A copy of the first half-year's database the test may change."""
    path = tmp_path / "half.duckdb"
    shutil.copyfile(stores[0], path)
    return str(path)


def _bin(path) -> tuple[int, np.ndarray]:
    data = np.fromfile(path, dtype="<f4")
    return int(data[0]), data[1:]


def _calendar(out, freq="day") -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(
        (Path(out) / "calendars" / f"{freq}.txt").read_text().split("\n")[:-1]))


def _field(out, code, field, freq="day") -> pd.Series:
    """One field of one code as qlib lays it out: values by calendar date."""
    start, values = _bin(Path(out) / "features" / code.lower() / f"{field}.{freq}.bin")
    return pd.Series(values, index=_calendar(out, freq)[start:start + len(values)])


def _expected(db, **kwargs) -> pd.DataFrame:
    """What the export should hold per bar, computed from kdist.load in float64."""
    hfq = kdist.load(db, adjust="hfq", placeholders="drop", **kwargs)
    raw = kdist.load(db, placeholders="drop", **kwargs)
    both = hfq.merge(raw[["symbol", "ts", "close", "volume"]], on=["symbol", "ts"],
                     how="left", suffixes=("", "_raw"))
    both["factor"] = both["close"] / both["close_raw"]
    both["volume_q"] = np.where(both["factor"].notna(), both["volume_raw"] / both["factor"],
                                both["volume"])
    plain = raw[~raw["symbol"].isin(set(hfq["symbol"]))].assign(
        factor=1.0, close_raw=lambda f: f["close"], volume_raw=lambda f: f["volume"],
        volume_q=lambda f: f["volume"])
    bars = pd.concat([both, plain], ignore_index=True).sort_values(["symbol", "ts"])
    bars["code"] = bars["symbol"].map(qlib_code)
    close32 = bars["close"].astype("float32").astype("float64")
    bars["change"] = close32 / close32.groupby(bars["symbol"]).shift(1) - 1
    return bars.reset_index(drop=True)


def _same_tree(a, b):
    """Every file of two exports byte for byte equal, and the same files."""
    files = sorted(p.relative_to(a) for p in Path(a).rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in Path(b).rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


# -- the layout, without qlib -----------------------------------------------------------


def test_codes_and_freqs():
    assert [qlib_code(s) for s in ("600000.SH", "000001.SZ", "830799.BJ", "0700.HK", "aapl",
                                   "BRK-B")] == [
        "SH600000", "SZ000001", "BJ830799", "0700.HK", "AAPL", "BRK-B"]
    assert [qlib_freq(f) for f in ("1d", "1m", "5m", "60m")] == ["day", "1min", "5min",
                                                                 "60min"]
    with pytest.raises(UsageError, match="weeks and months"):
        qlib_freq("1w")


def test_layout_is_dump_bins(stores, tmp_path):
    """Calendar = union of the dates, instruments upper-case with first/last bar, one bin
    per field: element 0 the first bar's calendar index, then float32 values, NaN on gaps;
    prices hfq, factor hfq/raw, volume raw/factor, change from the float32 closes."""
    db, out = stores[1], tmp_path / "qlib"
    seen = []
    summary = write_qlib(db, out, progress=lambda done, total: seen.append((done, total)))
    expected = _expected(db)
    calendar = _calendar(out)
    assert list(calendar) == sorted(expected["ts"].unique())
    assert summary == {**summary, "mode": "new", "incremental": False, "symbols": 9,
                       "calendar": len(calendar), "bars": len(expected), "missing": [],
                       "first": "2022-01-03", "last": "2023-12-29", "out": str(out)}
    assert seen[-1] == (18, 18) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    text = (out / "calendars" / "day.txt").read_text()
    assert text.startswith("2022-01-03\n2022-01-04\n") and text.endswith("2023-12-29\n")
    lines = (out / "instruments" / "all.txt").read_text().splitlines()
    assert lines[0] == "BJ830799\t2022-01-03\t2023-12-29"
    assert [line.split("\t")[0] for line in lines] == sorted(map(qlib_code, [
        *UNIVERSE, GAPPY, RAW_ONLY, VENDOR]))
    assert sorted(p.name for p in (out / "features" / "sh600000").iterdir()) == sorted(
        f"{f}.day.bin" for f in FIELDS)

    columns = {"open": "open", "high": "high", "low": "low", "close": "close",
               "factor": "factor", "volume": "volume_q", "amount": "amount",
               "change": "change"}
    for code, bars in expected.groupby("code"):
        for field, column in columns.items():
            got = _field(out, code, field)
            assert got.index[0] == bars["ts"].iloc[0] and got.index[-1] == bars["ts"].iloc[-1]
            want = pd.Series(bars[column].to_numpy("float64").astype("float32"),
                             index=pd.DatetimeIndex(bars["ts"]))
            np.testing.assert_array_equal(got.reindex(want.index).to_numpy(), want.to_numpy(),
                                          err_msg=f"{code} {field}")
            assert got.drop(want.index).isna().all()  # NaN where it has no bar
    gappy = _field(out, qlib_code(GAPPY), "close")
    assert gappy[pd.DatetimeIndex(GAPS)].isna().all() and gappy.notna().sum() == len(
        gappy) - len(GAPS)
    assert np.isnan(_field(out, qlib_code(GAPPY), "change")[GAPS[1]])
    assert (_field(out, qlib_code(RAW_ONLY), "factor") == 1).all()
    assert _field(out, qlib_code(VENDOR), "factor").isna().all()
    factor = _field(out, "SZ300750", "factor")  # bonus shares on 2022-06-03
    assert factor.min() > 1 and factor.nunique() == 3
    raw = kdist.load(db, "300750.SZ").set_index("ts")
    close = _field(out, "SZ300750", "close")
    np.testing.assert_allclose(close / factor, raw["close"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(_field(out, "SZ300750", "volume") * factor,
                               raw["volume"].to_numpy(), rtol=1e-6)


def test_incremental_export_equals_a_fresh_one(half, tmp_path):
    """Exported to mid-2023, the store updated to the year's end, exported again into the
    same directory: the new dates are appended, and every file equals a fresh export's."""
    out, fresh = tmp_path / "qlib", tmp_path / "fresh"
    write_qlib(half, out)
    sizes = {p: p.stat().st_size for p in out.rglob("*.bin")}
    assert _calendar(out)[-1] == pd.Timestamp("2023-06-30")
    kdist.update(half, end=END, client="sync", progress=False)
    kdist.update(half, end=END, adjust="hfq", client="sync", progress=False)
    summary = write_qlib(half, out)
    assert summary["mode"] == "incremental" and summary["incremental"]
    assert summary["appended"] >= 6 and summary["added"] == 0
    assert summary["appended"] + summary["rewritten"] + summary["unchanged"] == 9
    assert all(p.stat().st_size > size for p, size in sizes.items())
    write_qlib(half, fresh)
    _same_tree(out, fresh)
    again = write_qlib(half, out)  # nothing new: nothing written
    assert again["unchanged"] == 9 and again["mode"] == "incremental"
    _same_tree(out, fresh)


def test_new_symbols_and_a_later_window_merge(stores, tmp_path):
    """Symbols added later join the instruments; an export of a recent window keeps the
    bars before it; both end as a fresh export of everything."""
    db, out, fresh = stores[1], tmp_path / "qlib", tmp_path / "fresh"
    write_qlib(db, out, symbols=UNIVERSE[:3], end=MIDDLE)
    summary = write_qlib(db, out, symbols=UNIVERSE[:3], start="2023-06-01")
    assert summary["mode"] == "incremental" and summary["appended"] == 3
    assert summary["bars"] < 3 * 200  # only the window was read
    summary = write_qlib(db, out)
    assert summary["added"] == 6 and summary["unchanged"] == 3
    write_qlib(db, fresh)
    _same_tree(out, fresh)


def test_an_earlier_start_rewrites_everything(stores, tmp_path):
    """A calendar that grows before its end moves every bin: requested symbols are
    written anew, the others re-indexed from their own files, each value on its date."""
    db, out, fresh = stores[1], tmp_path / "qlib", tmp_path / "fresh"
    write_qlib(db, out, start="2023-01-01")
    before = _field(out, "SZ000001", "close")
    (out / "instruments" / "csi300.txt").write_text("SZ000001\t2023-01-03\t2023-12-29\n")
    summary = write_qlib(db, out, symbols=[s for s in UNIVERSE if s != "000001.SZ"])
    assert summary["mode"] == "rewrite" and not summary["incremental"]
    assert not (out / JOURNAL).exists() and not list(out.rglob("*.kdist-new"))
    pd.testing.assert_series_equal(_field(out, "SZ000001", "close"), before)
    assert (out / "instruments" / "csi300.txt").exists()
    assert "SZ000001\t2023-01-02\t2023-12-29" in (out / "instruments" / "all.txt").read_text()
    write_qlib(db, out)
    write_qlib(db, fresh)
    (fresh / "instruments" / "csi300.txt").write_text(
        (out / "instruments" / "csi300.txt").read_text())
    _same_tree(out, fresh)


def test_an_interrupted_rewrite_is_finished_or_dropped(stores, tmp_path):
    db, out = stores[1], tmp_path / "qlib"
    write_qlib(db, out, symbols=UNIVERSE[:2])
    close = out / "features" / "sh600000" / "close.day.bin"
    good = close.read_bytes()
    # Interrupted while writing: the new files go, the old ones stay.
    (out / JOURNAL).write_text(json.dumps({"phase": "write"}))
    close.with_name(close.name + ".kdist-new").write_bytes(b"half")
    write_qlib(db, out, symbols=UNIVERSE[:2])
    assert close.read_bytes() == good and not list(out.rglob("*.kdist-new"))
    # Interrupted while renaming: the rest is renamed into place.
    (out / JOURNAL).write_text(json.dumps({"phase": "rename"}))
    close.with_name(close.name + ".kdist-new").write_bytes(good)
    close.unlink()
    write_qlib(db, out, symbols=UNIVERSE[:2])
    assert close.read_bytes() == good and not (out / JOURNAL).exists()


def test_placeholder_bars_are_nan_unless_kept(half, tmp_path):
    """A vendor's bar for a suspended day (volume 0, prices the previous close) is NaN in
    qlib's layout, as qlib's collectors write suspended days; placeholders="keep" keeps it."""
    with duckdb.connect(half) as con:
        con.execute("""INSERT INTO kline SELECT symbol, freq, adjust, TIMESTAMP_S '2022-03-08',
                              close, close, close, close, 0, 0, source
                       FROM kline WHERE symbol = ? AND ts = TIMESTAMP_S '2022-03-07'""", [GAPPY])
    write_qlib(half, tmp_path / "drop", symbols=[GAPPY, UNIVERSE[0]])
    write_qlib(half, tmp_path / "keep", symbols=[GAPPY], placeholders="keep")
    assert np.isnan(_field(tmp_path / "drop", qlib_code(GAPPY), "close")["2022-03-08"])
    kept = _field(tmp_path / "keep", qlib_code(GAPPY), "close")
    assert kept["2022-03-08"] == kept["2022-03-07"]
    assert _field(tmp_path / "keep", qlib_code(GAPPY), "volume")["2022-03-08"] == 0


def test_minute_bars(tmp_path):
    db, out = str(tmp_path / "k.duckdb"), tmp_path / "qlib"
    kdist.ingest(["600000.SH", "000001.SZ"], start="2024-01-02", end="2024-01-04", freq="5m",
                 db=db, client="sync", progress=False)
    summary = write_qlib(db, out, freq="5m")
    bars = kdist.load(db, freq="5m")
    assert summary["freq"] == "5min" and summary["calendar"] == bars["ts"].nunique() == 144
    lines = (out / "calendars" / "5min.txt").read_text().splitlines()
    assert lines[0] == "2024-01-02 09:35:00" and lines[-1] == "2024-01-04 15:00:00"
    assert (out / "instruments" / "all.txt").read_text().splitlines()[0] == (
        "SH600000\t2024-01-02 09:35:00\t2024-01-04 15:00:00")
    start, values = _bin(out / "features" / "sz000001" / "close.5min.bin")
    assert start == 0 and len(values) == 144
    with pytest.raises(UsageError, match="5min"):
        write_qlib(db, out, freq="1d")  # one freq a directory


def test_refusals(stores, tmp_path):
    db = stores[1]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for out, kwargs, match in (
            (other, {}, "not a qlib export"),
            (other / "notes.txt", {}, "is a file"),
            (tmp_path / "a", {"symbols": ["600900.SH"]}, "nothing stored"),
            (tmp_path / "b", {"start": "2030-01-01"}, "nothing stored"),
            (tmp_path / "c", {"freq": "1m"}, "nothing stored"),
            (tmp_path / "d", {"freq": "1M"}, "weeks and months")):
        with pytest.raises(UsageError, match=match) as caught:
            write_qlib(db, out, **kwargs)
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # nothing written
    assert (other / "notes.txt").read_text() == "mine"


# -- read back by qlib ------------------------------------------------------------------


def _qlib_read(python, out, tmp_path, *args) -> dict:
    result = tmp_path / f"read-{len(list(tmp_path.glob('read-*')))}.json"
    done = subprocess.run([python, str(READER), str(out), str(result), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result.read_text())


def _qlib_frame(read: dict) -> pd.DataFrame:
    frame = pd.DataFrame([row[2:] for row in read["rows"]], columns=read["columns"],
                         dtype="float64")
    frame.insert(0, "ts", pd.to_datetime([row[1] for row in read["rows"]]))
    frame.insert(0, "code", [row[0] for row in read["rows"]])
    return frame


@pytest.mark.interop
def test_qlib_reads_back_the_hfq_bars(stores, tmp_path, interop_python):
    """qlib's D.features gives kdist.load(adjust="hfq")'s bars to float32 precision, its raw
    close as $close/$factor, NaN on the missing days; D.calendar is the union of the dates,
    D.list_instruments each code's first and last bar."""
    db, out = stores[1], tmp_path / "qlib"
    write_qlib(db, out)
    read = _qlib_read(interop_python("qlib"), out, tmp_path)
    expected = _expected(db)
    assert read["calendar"] == [str(ts) for ts in sorted(expected["ts"].unique())]
    bounds = expected.groupby("code")["ts"].agg(["min", "max"])
    assert read["instruments"] == {code: [[str(row["min"]), str(row["max"])]]
                                   for code, row in bounds.iterrows()}
    assert read["index"] == ["instrument", "datetime"] and set(read["dtypes"]) == {"float32"}
    got = _qlib_frame(read)
    merged = got.merge(expected, on=["code", "ts"], how="left", indicator=True)
    gaps = merged["_merge"].eq("left_only")
    assert sorted(merged.loc[gaps, "ts"].dt.strftime("%Y-%m-%d")) == GAPS
    assert merged.loc[gaps, read["columns"]].isna().all().all()
    merged = merged[~gaps]
    assert len(merged) == len(expected)  # every bar, once
    for field, column in (("$open", "open"), ("$high", "high"), ("$low", "low"),
                          ("$close", "close"), ("$factor", "factor"),
                          ("$volume", "volume_q"), ("$amount", "amount"),
                          ("$change", "change")):
        np.testing.assert_array_equal(merged[field].to_numpy(),
                                      merged[column].to_numpy().astype("float32")
                                      .astype("float64"), err_msg=field)
    known = merged["factor"].notna()
    np.testing.assert_allclose(merged.loc[known, "$close / $factor"],
                               merged.loc[known, "close_raw"], rtol=1e-6)
    np.testing.assert_allclose(merged.loc[known, "$volume"] * merged.loc[known, "$factor"],
                               merged.loc[known, "volume_raw"], rtol=1e-6)
    assert merged.loc[merged["code"].eq("SZ300750"), "$factor"].nunique() == 3


@pytest.mark.interop
def test_qlib_reads_an_incremental_export_as_a_fresh_one(half, tmp_path, interop_python):
    out, fresh = tmp_path / "qlib", tmp_path / "fresh"
    write_qlib(half, out, symbols=UNIVERSE)
    kdist.update(half, end=END, client="sync", progress=False)
    write_qlib(half, out)  # the new dates, and three symbols more
    write_qlib(half, fresh)
    python = interop_python("qlib")
    incremental = _qlib_read(python, out, tmp_path, "--start", "2023-06-01")
    whole = _qlib_read(python, fresh, tmp_path, "--start", "2023-06-01")
    assert incremental == whole
    assert incremental["calendar"][-1] == "2023-12-29 00:00:00"
    assert set(incremental["instruments"]) == {qlib_code(s) for s in [
        *UNIVERSE, GAPPY, RAW_ONLY, VENDOR]}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
