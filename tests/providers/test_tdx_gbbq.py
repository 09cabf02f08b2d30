"""Tests of TDX's gbbq file (corporate actions) and the tdx provider's ``actions``.

A real gbbq is a binary of several MB that cannot be fetched here, so the tests build one in
the true format: records packed with :mod:`struct` as ``<B7sIBffff``, their first 24 bytes
encrypted with the inverse of the published cipher under pytdx's own key table, behind a
``uint32`` count, at ``T0002/hq_cache/gbbq`` of a TDX root. pytdx's ``GbbqReader`` reading
the file back to the same values proves the fixture is in the true format; kdist's reader
must then agree with pytdx, and the factors kdist computes from the events and the raw
closes must give the forward-adjusted prices mootdx and hikyuu compute from the same figures.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from kdist.actions import COLUMNS, adjust_prices, hfq_factors
from kdist.errors import MissingDependencyError, PermanentProviderError
from kdist.providers import get_provider, tdx_gbbq
from kdist.schema import Adjust, Freq
from kdist.testing import ProviderConformance

with warnings.catch_warnings():
    # pytdx's block_reader warns when compiled without a cached .pyc (see tdx_gbbq).
    warnings.simplefilter("ignore", SyntaxWarning)
    gbbq_reader = pytest.importorskip("pytdx.reader.gbbq_reader")

# -- the fixture: the inverse of the published cipher, under pytdx's key ------------------------

_KEY = bytes.fromhex(gbbq_reader.GbbqReader.hexdump_keys)
_P = struct.unpack_from("<18I", _KEY, 0)
_S = [struct.unpack_from("<256I", _KEY, at) for at in (0x48, 0x448, 0x848, 0xC48)]
_MASK = 0xFFFFFFFF


def _f(x):
    return ((((_S[0][x >> 24] + _S[1][(x >> 16) & 255]) & _MASK) ^ _S[2][(x >> 8) & 255])
            + _S[3][x & 255]) & _MASK


def encrypt_block(first, second):
    """The 8-byte block (two little-endian words) that decrypts to ``(first, second)``.

    Decryption runs ``num = P[17] ^ lo``, then ``num, old = old ^ F(num) ^ P[i], num`` for i
    from 16 down to 1, and yields ``(old ^ P[0], num)``: this runs it backwards.
    """
    num, old = second, first ^ _P[0]
    for i in range(1, 17):
        num, old = old, num ^ _f(old) ^ _P[i]
    return num ^ _P[17], old


def record(market, code, date, category, f1=0.0, f2=0.0, f3=0.0, f4=0.0) -> bytes:
    clear = struct.pack("<B7sIBffff", market, code.encode() + b"\0", date, category,
                        f1, f2, f3, f4)
    blocks = b"".join(struct.pack("<II", *encrypt_block(*struct.unpack_from("<II", clear, at)))
                      for at in (0, 8, 16))
    return blocks + clear[24:]


def gbbq_bytes(records) -> bytes:
    return struct.pack("<I", len(records)) + b"".join(record(*r) for r in records)


def write_gbbq(root, records, data=None):
    path = root / "T0002" / "hq_cache" / "gbbq"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gbbq_bytes(records) if data is None else data)
    return path


def write_day(root, symbol, rows):
    """``.day`` rows ``(YYYYMMDD, close x100)``: open, high and low equal the close."""
    code, exchange = symbol.split(".")
    path = root / "vipdoc" / exchange.lower() / "lday" / f"{exchange.lower()}{code}.day"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(struct.pack("<IIIIIfII", d, c, c, c, c, c * 100.0, 100000, 0)
                              for d, c in rows))
    return path


# 600000.SH's events: cash and bonus; cash and rights; cash alone. Figures TDX-style, per 10
# shares (the rights price in yuan), all exact in float32 so pytdx and kdist read the same.
EVENTS = [
    (1, "600000", 20240110, 1, 2.25, 0.0, 3.0, 0.0),
    (1, "600000", 20240205, 1, 1.5, 8.5, 0.0, 2.0),
    (1, "600000", 20240304, 1, 0.75, 0.0, 0.0, 0.0),
]
OTHERS = [
    # Categories other than 1 of the same code: share counts in 万股, never actions.
    (1, "600000", 20240110, 2, 100.0, 200.0, 130.0, 260.0),
    (1, "600000", 20240115, 5, 1000.0, 2000.0, 1100.0, 2100.0),
    (1, "600000", 20240220, 6, 0.0, 0.0, 0.0, 0.0),
    (1, "600000", 20240301, 11, 0.0, 0.0, 0.5, 0.0),
    # The same code on the other market is another symbol (000001.SZ vs 000001.SH).
    (0, "000001", 20230614, 1, 2.85, 0.0, 0.0, 0.0),
    (1, "000001", 20230614, 1, 9.0, 0.0, 0.0, 0.0),
    # A Beijing stock (TDX's market 2), a figure float32 cannot hold exactly.
    (2, "830799", 20240520, 1, 2.3, 0.0, 0.0, 0.0),
    # A market kdist does not read.
    (7, "600000", 20240110, 1, 5.0, 0.0, 0.0, 0.0),
]
RECORDS = [*OTHERS[:2], EVENTS[0], *OTHERS[2:], *EVENTS[1:]]

# Raw closes x100 of 600000.SH, Jan-Mar 2024 trading days, with the drops of the ex-dates.
DAYS = [20240102, 20240103, 20240104, 20240105, 20240108, 20240109, 20240110, 20240111,
        20240112, 20240201, 20240202, 20240205, 20240206, 20240229, 20240301, 20240304,
        20240305]
CLOSES = [1000, 1012, 1005, 1020, 1031, 1025, 785, 790, 801, 812, 820, 821, 818, 830, 826,
          818, 822]


@pytest.fixture
def root(tmp_path):
    directory = tmp_path / "new_tdx"
    write_day(directory, "600000.SH", list(zip(DAYS, CLOSES)))
    write_day(directory, "000001.SZ", [(20230613, 1000), (20230614, 980)])
    write_gbbq(directory, RECORDS)
    return directory


@pytest.fixture
def tdx(root):
    return get_provider("tdx", root=str(root))


# -- the file's format ----------------------------------------------------------------------------


def test_pytdx_reads_the_fixture_back_to_its_values(root):
    """The fixture is a gbbq in the true format: pytdx's own reader decodes it exactly."""
    frame = gbbq_reader.GbbqReader().get_df(str(root / "T0002" / "hq_cache" / "gbbq"))
    got = list(frame.itertuples(index=False, name=None))
    expected = [(m, c, d, k, *(float(np.float32(f)) for f in fs))
                for m, c, d, k, *fs in RECORDS]
    assert got == expected


def test_kdist_decrypts_the_same_records_as_pytdx(tmp_path):
    rng = np.random.default_rng(7)
    records = [
        (int(rng.integers(0, 3)), f"{int(rng.integers(0, 10**6)):06d}",
         int(rng.integers(1990, 2030)) * 10000 + int(rng.integers(1, 13)) * 100
         + int(rng.integers(1, 29)), int(rng.integers(1, 15)),
         *(float(v) for v in rng.uniform(0, 1000, 4).astype(np.float32)))
        for _ in range(300)
    ]
    path = write_gbbq(tmp_path, records)
    ours = tdx_gbbq.read_records(path)
    theirs = gbbq_reader.GbbqReader().get_df(str(path))
    assert ours["market"].tolist() == theirs["market"].tolist()
    assert [c.decode() for c in ours["code"]] == theirs["code"].tolist()
    assert ours["date"].tolist() == theirs["datetime"].tolist()
    assert ours["category"].tolist() == theirs["category"].tolist()
    for field, column in zip(("f1", "f2", "f3", "f4"), theirs.columns[4:]):
        assert ours[field].astype(float).tolist() == theirs[column].tolist()


def test_bytes_after_the_last_record_are_ignored_as_pytdx_does(tmp_path):
    path = write_gbbq(tmp_path, [], data=gbbq_bytes(EVENTS) + b"\0" * 7)
    assert len(tdx_gbbq.read_records(path)) == len(EVENTS)


# -- the tdx provider's actions -------------------------------------------------------------------


def test_only_ex_rights_rows_of_the_symbol_per_share(tdx):
    got = tdx.actions("600000.SH", "2024-01-01", "2024-12-31")
    assert list(got.columns) == list(COLUMNS)
    expected = pd.DataFrame({
        "ex_date": pd.to_datetime(["2024-01-10", "2024-02-05", "2024-03-04"]).as_unit("us"),
        "cash": [0.225, 0.15, 0.075],
        "bonus": [0.3, 0.0, 0.0],
        "rights": [0.0, 0.2, 0.0],
        "rights_price": [0.0, 8.5, 0.0],
        "split": [1.0, 1.0, 1.0],
        "factor": [np.nan] * 3,
    })
    pd.testing.assert_frame_equal(got, expected)


def test_markets_are_exchanges(tdx):
    sz = tdx.actions("000001.SZ", "2023-01-01", "2023-12-31")
    sh = tdx.actions("000001.SH", "2023-01-01", "2023-12-31")
    assert sz["cash"].tolist() == [0.285] and sh["cash"].tolist() == [0.9]
    # Market 2 is Beijing; 2.3 per 10 (float32 2.2999999523) is 0.23 per share exactly.
    assert tdx.actions("830799.BJ", "2024-01-01", "2024-12-31")["cash"].tolist() == [0.23]


def test_window_is_inclusive_and_a_symbol_without_records_has_none(tdx):
    got = tdx.actions("600000.SH", "2024-01-10", "2024-02-05")
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-10", "2024-02-05"]
    assert len(tdx.actions("600000.SH", "2024-01-11", "2024-02-04")) == 0
    none = tdx.actions("510050.SH", "2000-01-01", "2030-12-31")
    assert list(none.columns) == list(COLUMNS) and len(none) == 0


def test_an_empty_gbbq_has_no_actions(root, tdx):
    write_gbbq(root, [])
    assert len(tdx.actions("600000.SH", "2000-01-01", "2030-12-31")) == 0


def test_factors_from_raw_closes_give_mootdx_and_hikyuu_qfq_prices(root, tdx):
    """The worked example: kdist's factors (events from the gbbq, raw closes from the .day
    file) give mootdx's forward-adjusted closes, computed from pytdx's frame of the same file
    with ``preclose = (close.shift(1)*10 - fenhong + peigu*peigujia)/(10+peigu+songzhuangu)``
    and ``adj = (preclose.shift(-1)/close).fillna(1)[::-1].cumprod()`` (VENDOR-FACTS 4)."""
    bars = tdx.fetch("600000.SH", "2024-01-01", "2024-03-31")
    events = tdx.actions("600000.SH", "2024-01-01", "2024-03-31")
    ts, close = bars["ts"].to_numpy(), bars["close"].to_numpy()
    before = np.searchsorted(ts, events["ex_date"].to_numpy().astype(ts.dtype)) - 1
    factors = hfq_factors(events, close[before])
    ours = adjust_prices(ts, close, events["ex_date"].to_numpy(), factors, "qfq")

    gbbq = gbbq_reader.GbbqReader().get_df(str(root / "T0002" / "hq_cache" / "gbbq"))
    xdxr = gbbq[(gbbq["category"] == 1) & (gbbq["market"] == 1) & (gbbq["code"] == "600000")]
    xdxr = xdxr.rename(columns={
        "hongli_panqianliutong": "fenhong", "peigujia_qianzongguben": "peigujia",
        "songgu_qianzongguben": "songzhuangu", "peigu_houzongguben": "peigu",
    }).assign(date=pd.to_datetime(xdxr["datetime"].astype(str))).set_index("date")
    frame = pd.DataFrame({"close": close}, index=pd.DatetimeIndex(ts))
    frame = frame.join(xdxr[["fenhong", "peigujia", "songzhuangu", "peigu"]]).fillna(0)
    preclose = (frame["close"].shift(1) * 10 - frame["fenhong"]
                + frame["peigu"] * frame["peigujia"]) / (10 + frame["peigu"]
                                                         + frame["songzhuangu"])
    adj = (preclose.shift(-1) / frame["close"]).fillna(1)[::-1].cumprod()
    theirs = (frame["close"] * adj).sort_index().to_numpy()

    assert len(events) == 3 and not np.allclose(theirs, close)  # the example adjusts
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)
    # Adjusted to the last ex-date, the close before it is that ex-date's reference price.
    assert ours[DAYS.index(20240301)] == pytest.approx(8.26 - 0.075, rel=1e-12)


# -- no file, a bad file --------------------------------------------------------------------------


def test_without_a_gbbq_file_the_provider_serves_no_actions(root):
    (root / "T0002" / "hq_cache" / "gbbq").unlink()
    tdx = get_provider("tdx", root=str(root))
    assert tdx.serves_actions is False
    assert tdx.actions("600000.SH", "2024-01-01", "2024-12-31") is None
    assert len(tdx.fetch("600000.SH", "2024-01-01", "2024-01-31")) > 0  # bars still read
    # A root that is not here at all (a client submitting to workers) answers too.
    assert get_provider("tdx", root=str(root / "missing")).serves_actions is False


def test_a_gbbq_that_goes_missing_after_the_check_is_a_permanent_error(root, tdx):
    assert tdx.serves_actions
    (root / "T0002" / "hq_cache" / "gbbq").unlink()
    with pytest.raises(PermanentProviderError, match="gbbq does not exist"):
        tdx._actions("600000.SH", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x03\x00", "2 bytes hold no record count"),
        (gbbq_bytes(EVENTS)[:-10], "truncated: 81 bytes, its count of 3 records needs 91"),
        (struct.pack("<I", 2) + bytes(range(58)), "record 0 of 2 decrypts to the code"),
    ],
    ids=["no-count", "truncated", "garbage"],
)
def test_a_corrupt_gbbq_is_a_permanent_error_of_one_line_naming_it(root, tdx, data, match):
    path = write_gbbq(root, [], data=data)
    with pytest.raises(PermanentProviderError, match=match) as caught:
        tdx.actions("600000.SH", "2024-01-01", "2024-12-31")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message and caught.value.path == str(path)


def test_an_ex_rights_record_without_a_calendar_date_is_refused(root, tdx):
    write_gbbq(root, [*EVENTS, (0, "000002", 20240231, 1, 1.0, 0.0, 0.0, 0.0)])
    with pytest.raises(PermanentProviderError, match="000002 has the date 20240231"):
        tdx.actions("600000.SH", "2024-01-01", "2024-12-31")


def test_the_file_is_read_once_per_process_and_again_when_tdx_rewrites_it(root, monkeypatch):
    reads = []
    real = tdx_gbbq.read_records
    monkeypatch.setattr(tdx_gbbq, "read_records", lambda *a: reads.append(1) or real(*a))
    monkeypatch.setattr(tdx_gbbq, "_cache", {})
    first, second = (get_provider("tdx", root=str(root)) for _ in range(2))
    first.actions("600000.SH", "2024-01-01", "2024-12-31")
    second.actions("000001.SZ", "2023-01-01", "2023-12-31")
    pickle.loads(pickle.dumps(first)).actions("830799.BJ", "2024-01-01", "2024-12-31")
    assert len(reads) == 1
    path = write_gbbq(root, [*RECORDS, (1, "600000", 20240401, 1, 1.0, 0.0, 0.0, 0.0)])
    os.utime(path, ns=(1, 1))  # a new mtime, whatever the file system's resolution
    got = first.actions("600000.SH", "2024-01-01", "2024-12-31")
    assert len(reads) == 2 and got["ex_date"].iat[-1] == pd.Timestamp("2024-04-01")


def test_a_corrupt_file_is_refused_for_every_symbol_after_one_read(root, monkeypatch):
    reads = []
    real = tdx_gbbq.read_records
    monkeypatch.setattr(tdx_gbbq, "read_records", lambda *a: reads.append(1) or real(*a))
    write_gbbq(root, [], data=gbbq_bytes(EVENTS)[:-1])
    tdx = get_provider("tdx", root=str(root))
    for symbol in ("600000.SH", "000001.SZ"):
        with pytest.raises(PermanentProviderError, match="truncated"):
            tdx.actions(symbol, "2024-01-01", "2024-12-31")
    assert len(reads) == 1


def test_without_pytdx_the_actions_ask_for_the_tdx_extra(tdx, monkeypatch):
    monkeypatch.setattr(tdx_gbbq, "_key", None)
    monkeypatch.setattr(tdx_gbbq, "_cache", {})
    monkeypatch.setitem(sys.modules, "pytdx.reader.gbbq_reader", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "kdist\[tdx\]"'):
        tdx.actions("600000.SH", "2024-01-01", "2024-12-31")


def test_bars_and_serves_actions_import_no_pytdx(root):
    code = (
        "import sys\n"
        "from kdist.providers import get_provider\n"
        f"p = get_provider('tdx', root={str(root)!r})\n"
        "assert p.serves_actions\n"
        "p.fetch('600000.SH', '2024-01-01', '2024-01-31')\n"
        "sys.exit('pytdx imported' if 'pytdx' in sys.modules else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# -- conformance ----------------------------------------------------------------------------------


class TestConformanceWithGbbq(ProviderConformance):
    symbol = "600000.SH"
    start, end = "2024-01-01", "2024-03-31"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "600001.SH"  # no file
    actions_window = ("2024-01-01", "2024-01-31")
    metadata = {"name": "tdx", "requires": (), "freqs": tuple(Freq), "adjusts": (Adjust.NONE,),
                "tz": None, "options": {"root": None, "price_scale": "auto", "kinds": "listed"}}

    @pytest.fixture
    def provider(self, tdx):
        return tdx
