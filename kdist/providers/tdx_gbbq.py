"""The TDX ``gbbq`` file (股本变迁): every symbol's corporate actions in one encrypted file.

A TDX installation keeps ``T0002/hq_cache/gbbq``: a little-endian ``uint32`` count, then that
many 29-byte records (bytes after the last record are ignored, as pytdx ignores them). Bytes
0-23 of a record are three 8-byte blocks encrypted with Blowfish under a fixed, already
expanded key schedule (P-array at byte 0x00, S-boxes at 0x48, 0x448, 0x848, 0xC48; each
block's two halves are little-endian ``uint32``); bytes 24-28 are clear. The key is
pytdx's (``pytdx.reader.gbbq_reader.GbbqReader.hexdump_keys``, pytdx==1.72, the ``tdx``
extra): pytdx declares no license, so kdist imports it rather than copying it. kdist
decrypts every record at once with numpy; pytdx's ``GbbqReader`` does it record by record.

A decrypted record is ``<B7sIBffff``: market (0 Shenzhen, 1 Shanghai, pytdx's
``TDXParams.MARKET_SZ``/``MARKET_SH``; 2 Beijing, TDX's id for the BSE, which pytdx 1.72
predates and mootdx names ``MARKET_BJ``; others are skipped), the code (six ASCII digits
and a NUL), the date as the integer YYYYMMDD, the category, and four float32 figures whose
meaning depends on it. Only category 1 (除权除息) is read: f1 cash dividend (分红) in yuan per
10 shares, f2 rights price (配股价) in yuan, f3 bonus and transfer shares (送转股) per 10, f4
rights shares (配股) per 10. :class:`GbbqIndex` turns them into :data:`kdist.actions.COLUMNS`
per share: ``cash = f1/10``, ``rights_price = f2``, ``bonus = f3/10``, ``rights = f4/10``,
``split = 1`` and ``factor`` NaN, so kdist computes the factors from the stored raw closes
with :func:`kdist.actions.hfq_factors` (the formula is in :mod:`kdist.actions`; it is the
ex-rights price hikyuu and mootdx compute from these figures). A float32 figure is read as
the shortest decimal that rounds to it, the figure TDX was given, and divided in decimal:
2.3 per 10 shares (float32 2.2999999523) is 0.23 per share. Categories 11 and 12 (扩缩股,
非流通股缩股: f3 the ratio) are not read; the others count shares (万股), not prices.

A file is refused whole (:class:`~kdist.errors.PermanentProviderError`, one line naming the
path) when it is shorter than its count says, or when a record's code is not six digits or
a category-1 record's date is no calendar day: what a wrong key, a shifted record or a
damaged file decrypts to. Reading one file of several MB takes a fraction of a second;
:func:`load` does it once per process and file version (size and mtime) and indexes the
category-1 records by symbol.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..actions import COLUMNS, empty_actions
from ..errors import MissingDependencyError, PermanentProviderError
from .base import one_line

__all__ = [
    "GBBQ", "MARKETS", "RECORD", "GbbqIndex", "decrypt", "key_schedule", "load", "read_records",
]

#: Where the file is under a TDX installation directory.
GBBQ = Path("T0002") / "hq_cache" / "gbbq"
#: TDX market ids of the exchanges kdist reads.
MARKETS = {0: "SZ", 1: "SH", 2: "BJ"}
_MARKET_OF = {exchange: market for market, exchange in MARKETS.items()}

_COUNT_SIZE = 4
_RECORD_SIZE = 29
_ENCRYPTED = 24  # three 8-byte blocks
#: A decrypted record, packed: pytdx's struct '<B7sIBffff'.
RECORD = np.dtype([
    ("market", "u1"), ("code", "S7"), ("date", "<u4"), ("category", "u1"),
    ("f1", "<f4"), ("f2", "<f4"), ("f3", "<f4"), ("f4", "<f4"),
])
assert RECORD.itemsize == _RECORD_SIZE
_EX_RIGHTS = 1  # 除权除息
#: The key schedule in uint32 words: P[0..17], then the four 256-word S-boxes.
_P, _S0, _S1, _S2, _S3 = 0, 18, 18 + 256, 18 + 512, 18 + 768
_KEY_WORDS = 18 + 4 * 256

_key_lock = threading.Lock()
_key: np.ndarray | None = None
_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, int], GbbqIndex | PermanentProviderError]] = {}
_CACHED_FILES = 4  # several TDX roots in one process are rare


def key_schedule() -> np.ndarray:
    """Return pytdx's gbbq key as ``uint32`` words (P-array, then S-boxes), loaded once.

    Raises
    ------
    MissingDependencyError
        pytdx is not installed: ``pip install "kdist[tdx]"``.
    """
    global _key
    with _key_lock:
        if _key is None:
            try:
                # pytdx.reader's __init__ imports block_reader, whose `is not ''` warns when
                # compiled without a cached .pyc: a warning turned error must not break it.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SyntaxWarning)
                    from pytdx.reader.gbbq_reader import GbbqReader
            except ImportError as exc:
                raise MissingDependencyError(
                    "Reading TDX's gbbq file (corporate actions) needs pytdx, which holds "
                    f'its key: pip install "kdist[tdx]" ({one_line(exc)})',
                    name="pytdx", extra="tdx",
                ) from exc
            words = np.frombuffer(bytes.fromhex(GbbqReader.hexdump_keys), "<u4")
            if len(words) < _KEY_WORDS:
                raise MissingDependencyError(
                    f"pytdx's gbbq key has {len(words) * 4} bytes, not {_KEY_WORDS * 4}: "
                    'install the pytdx kdist was tested with: pip install "kdist[tdx]"',
                    name="pytdx", extra="tdx",
                )
            _key = words[:_KEY_WORDS].astype(np.uint32)
    return _key


def decrypt(lo: np.ndarray, hi: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
    """Decrypt 8-byte blocks given as their little-endian ``uint32`` halves.

    Blowfish decryption under the expanded ``key`` (:func:`key_schedule` by default), as
    pytdx's ``GbbqReader`` does it block by block: ``num = P[17] ^ lo``, sixteen rounds from
    ``P[16]`` down to ``P[1]`` of ``num, old = old ^ F(num) ^ P[i], num`` with
    ``F(x) = ((S0[x>>24] + S1[x>>16 & 255]) ^ S2[x>>8 & 255]) + S3[x & 255]``, and the block
    ``(old ^ P[0], num)``. Returns an ``(n, 2)`` ``uint32`` array.
    """
    key = key_schedule() if key is None else key
    p = key[_P:_S0]
    s0, s1, s2, s3 = (key[at:at + 256] for at in (_S0, _S1, _S2, _S3))
    num = np.asarray(lo, np.uint32) ^ p[17]
    old = np.asarray(hi, np.uint32).copy()
    for i in range(16, 0, -1):
        f = ((s0[num >> 24] + s1[(num >> 16) & 0xFF]) ^ s2[(num >> 8) & 0xFF]) + s3[num & 0xFF]
        num, old = old ^ f ^ p[i], num
    return np.stack([old ^ p[0], num], axis=1)


def _corrupt(path: Path, why: str) -> PermanentProviderError:
    return PermanentProviderError(
        f"The TDX gbbq file {path} is corrupt: {why}; download it again in TDX (盘后数据下载 "
        "with 股本变迁) or delete it", path=str(path),
    )


def read_records(path: Path, data: bytes | None = None) -> np.ndarray:
    """Return every record of the gbbq file at ``path``, decrypted, as :data:`RECORD`.

    ``data`` is the file's bytes when already read. Raises PermanentProviderError when the
    file cannot be read, is shorter than its count says, or decrypts to a record whose code
    is not six digits (a wrong key, a shifted record, damage).
    """
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PermanentProviderError(
                f"Cannot read the TDX gbbq file {path}: {one_line(exc)}", path=str(path)
            ) from exc
    if len(data) < _COUNT_SIZE:
        raise _corrupt(path, f"{len(data)} bytes hold no record count")
    count = int.from_bytes(data[:_COUNT_SIZE], "little")
    need = _COUNT_SIZE + count * _RECORD_SIZE
    if len(data) < need:
        raise _corrupt(path, f"truncated: {len(data)} bytes, its count of {count} records "
                             f"needs {need}")
    raw = np.frombuffer(data, np.uint8, count * _RECORD_SIZE, _COUNT_SIZE)
    raw = raw.reshape(count, _RECORD_SIZE)
    halves = _as(raw[:, :_ENCRYPTED], "<u4").reshape(-1, 2)
    clear = _as(decrypt(halves[:, 0], halves[:, 1]).astype("<u4"), np.uint8)
    plain = np.concatenate([clear.reshape(count, _ENCRYPTED), raw[:, _ENCRYPTED:]], axis=1)
    records = _as(plain, RECORD).reshape(count)
    digits = plain[:, 1:7]
    bad = ~((digits >= ord("0")) & (digits <= ord("9"))).all(axis=1)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise _corrupt(path, f"record {at} of {count} decrypts to the code "
                             f"{bytes(digits[at])!r}, not six digits")
    return records


def _decimal(values: np.ndarray, shift: int = 0) -> np.ndarray:
    """float32 figures as the shortest decimals that round to them, divided by
    ``10**shift`` in decimal (2.3 per 10 is 0.23 per share, not 2.3 / 10 = 0.229999...)."""
    out = np.asarray(values, np.float32).astype(np.float64)
    for at, value in enumerate(np.asarray(values, np.float32)):
        if np.isfinite(value):
            digits = np.format_float_positional(value, unique=True, trim="-")
            out[at] = float(f"{digits}e-{shift}")
    return out


class GbbqIndex:
    """The category-1 (除权除息) records of one gbbq file, indexed by market and code.

    Build it with :meth:`from_records` (or :func:`load`); :meth:`actions` returns one
    symbol's rows in :data:`kdist.actions.COLUMNS`, per share.
    """

    def __init__(self, keys: np.ndarray, dates: np.ndarray, figures: np.ndarray):
        # Sorted by key (market * 10**6 + code); rows of a key are in file order.
        self._keys, self._dates, self._figures = keys, dates, figures

    @classmethod
    def from_records(cls, records: np.ndarray, path: Path | str = "gbbq") -> GbbqIndex:
        """Index the category-1 records of known markets; refuse one whose date is no day."""
        keep = (records["category"] == _EX_RIGHTS) & np.isin(records["market"], list(MARKETS))
        rows = records[keep]
        text = pd.Series(rows["date"].astype(str))
        dates = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        dates[text.str.len() != 8] = pd.NaT
        if dates.isna().any():
            at = int(np.flatnonzero(dates.isna().to_numpy())[0])
            row = rows[at]
            raise _corrupt(path, f"the ex-rights record of {row['code'][:6].decode()} has the "
                                 f"date {int(row['date'])}, which is no calendar day")
        code_bytes = _as(rows["code"], np.uint8).reshape(-1, 7)
        digits = code_bytes[:, :6].astype(np.int64) - ord("0")
        codes = digits @ (10 ** np.arange(5, -1, -1, dtype=np.int64))
        keys = rows["market"].astype(np.int64) * 10**6 + codes
        order = np.argsort(keys, kind="stable")
        figures = np.stack([rows[f] for f in ("f1", "f2", "f3", "f4")], axis=1)[order]
        return cls(keys[order], dates.to_numpy().astype("datetime64[us]")[order], figures)

    def __len__(self) -> int:
        return len(self._keys)

    def actions(self, code: str, exchange: str) -> pd.DataFrame:
        """Return the ex-rights rows of ``code`` on ``exchange`` (``SH``, ``SZ``, ``BJ``) per
        share, in file order: ``factor`` NaN, ``split`` 1. No rows: an empty frame."""
        market = _MARKET_OF.get(exchange)
        if market is None or not (len(code) == 6 and code.isascii() and code.isdigit()):
            return empty_actions()
        key = market * 10**6 + int(code)
        lo, hi = np.searchsorted(self._keys, [key, key + 1])
        if lo == hi:
            return empty_actions()
        f1, f2, f3, f4 = self._figures[lo:hi].T
        frame = pd.DataFrame({
            "ex_date": self._dates[lo:hi], "cash": _decimal(f1, 1), "bonus": _decimal(f3, 1),
            "rights": _decimal(f4, 1), "rights_price": _decimal(f2), "split": 1.0,
            "factor": np.nan,
        })
        return frame[list(COLUMNS)]


def load(path: Path) -> GbbqIndex:
    """Return the index of the gbbq file at ``path``, read once per process and file version.

    A file TDX has rewritten (another size or mtime) is read again; a corrupt one is refused
    again without reading it, until it changes. Raises PermanentProviderError when it cannot
    be read or is corrupt (:func:`read_records`), MissingDependencyError without pytdx.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            stamp = _stamp(handle)
            with _cache_lock:
                hit = _cache.get(str(path))
                if hit is None or hit[0] != stamp:
                    try:
                        found = GbbqIndex.from_records(read_records(path, handle.read()), path)
                    except PermanentProviderError as exc:
                        found = exc  # every symbol would read the same bytes to no avail
                    while len(_cache) >= _CACHED_FILES:
                        _cache.pop(next(iter(_cache)))
                    hit = _cache[str(path)] = (stamp, found)
    except OSError as exc:
        raise PermanentProviderError(
            f"Cannot read the TDX gbbq file {path}: {one_line(exc)}", path=str(path)
        ) from exc
    if isinstance(hit[1], PermanentProviderError):
        raise copy.copy(hit[1])  # a fresh exception per caller: tracebacks are per raise
    return hit[1]


def _stamp(handle) -> tuple[int, int]:
    stat = os.fstat(handle.fileno())
    return stat.st_size, stat.st_mtime_ns


def _as(array: np.ndarray, dtype) -> np.ndarray:
    """``array``'s bytes read as ``dtype``, without a copy when it is contiguous (numpy's
    ``view``, by a name no SQL check mistakes for DuckDB's)."""
    return np.frombuffer(np.ascontiguousarray(array), dtype)
