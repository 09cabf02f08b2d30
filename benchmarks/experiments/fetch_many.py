"""Prototype behind the proposal for scenario E: fetch and check a chunk as one batch.

Usage: ``python -m benchmarks.experiments.fetch_many``. An incremental update of 5,000
symbols fetches a few bars of each; kdist's ``fetch_chunk`` spends about 1.8 ms a symbol on
it (one provider call, one ``normalise``, one thread hand-off and retry loop per symbol),
so the update costs about half of the full import. Here the synthetic provider's bars for a
whole chunk are computed at once (``fetch_many``, a hook a provider could offer) and
``normalise``'s row checks run once per chunk with rejected rows counted per symbol
(``check_many``). The values equal ``SyntheticProvider.fetch`` exactly (checked below); the
script prints both costs per symbol. It reads the provider's private helpers: a prototype,
not an API.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

import kdist.providers.synthetic as S
from kdist.plan import plan_chunks
from kdist.runner import fetch_chunk
from kdist.schema import Adjust, Freq


def _mixv(x):
    return S._mix(x)

def salts(keys, stream):
    # _salt(key, stream) = mix_int(key ^ mix_int(stream)), vectorised over keys
    return _mixv(keys ^ np.uint64(S._mix_int(stream)))

def fetch_many(symbols, seed, first, last):
    """Daily bars of many symbols over one window: one frame with a symbol code column."""
    days = S._trading_days(np.datetime64(first, 'D'), np.datetime64(last, 'D'))
    d = (days - S._EPOCH).astype(np.int64)
    keys = np.array([S._symbol_key(s, seed) for s in symbols], dtype=np.uint64)
    n, B = len(symbols), S._BLOCK
    d0, d1 = int(d[0]), int(d[-1]); b0, b1 = d0 // B, d1 // B; nb = b1 - b0 + 1
    points = np.arange(2 * B * b0, 2 * B * (b1 + 1), dtype=np.int64).astype(np.uint64)
    with np.errstate(over='ignore'):
        steps = S._unit(_mixv(points[None, :] + salts(keys, S._STEPS)[:, None]))
    steps = steps.reshape(n, nb, 2 * B) * S._STEP_SCALE
    walk = np.cumsum(steps, axis=2)
    blocks = np.arange(b0, b1 + 2, dtype=np.int64)
    # pins: value noise per (symbol, block, octave)
    k = S._PIN_OCTAVES
    knot = blocks[:, None] >> k
    frac = (blocks[:, None] - (knot << k)) / (2.0 ** k)
    ps = salts(keys, S._PINS)[:, None, None]
    with np.errstate(over='ignore'):
        left = S._unit(_mixv((knot * 8 + k).astype(np.uint64)[None] + ps))
        right = S._unit(_mixv(((knot + 1) * 8 + k).astype(np.uint64)[None] + ps))
    level = (left + (right - left) * frac[None]) * S._PIN_AMPLITUDE
    pins = level[..., 0].copy()
    for o in range(1, len(k)):
        pins += level[..., o]
    miss = walk[:, :, -1] - (pins[:, 1:] - pins[:, :-1])
    walk = np.concatenate([np.zeros((n, nb, 1)), walk[:, :, :-1]], axis=2)
    log = (pins[:, :-1, None] + walk - miss[:, :, None] * S._RAMP).reshape(n, -1)
    at = 2 * (d - B * b0)
    lo_, lc = log[:, at], log[:, at + 1]
    with np.errstate(over='ignore'):
        bits = _mixv(d.astype(np.uint64)[None, :] + salts(keys, S._NOISE)[:, None])
    mask = np.uint64(0xFFFF)
    noise = [((bits >> np.uint64(16 * i)) & mask).astype(np.float64) / 65536 for i in range(4)]
    base = np.array([5.0 + (S._mix_int(int(x)) % 9500) / 100.0 for x in keys])[:, None]
    lots = np.array([(2000 + S._mix_int(int(x) ^ 7) % 50000) for x in keys], float)[:, None]
    o = base * np.exp(lo_); c = base * np.exp(lc)
    spread = 0.004 + 0.012 * noise[0]
    h = np.round(np.maximum(o, c) * (1 + spread * noise[1]), 2)
    l = np.round(np.minimum(o, c) * (1 - spread * noise[2]), 2)
    o, c = np.round(o, 2), np.round(c, 2)
    v = np.maximum(1.0, np.round(lots * np.exp(0.6 * (2 * noise[3] - 1)))) * 100.0
    a = np.round(v * (o + h + l + c) / 4.0, 2)
    m = len(days)
    return pd.DataFrame({"code": np.repeat(np.arange(n), m), "ts": np.tile(days.astype('datetime64[us]'), n),
                         "open": o.ravel(), "high": h.ravel(), "low": l.ravel(), "close": c.ravel(),
                         "volume": v.ravel(), "amount": a.ravel()}, copy=False)

def check_many(frame, n, start, end):
    """normalise()'s row checks for a whole chunk at once, with rejected counts per symbol."""
    o, h, l, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    ts = frame["ts"].to_numpy(); code = frame["code"].to_numpy()
    prices = np.column_stack((o, h, l, c))
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1) | (h < l) \
        | (np.maximum(o, c) > h) | (np.minimum(o, c) < l) | (frame["volume"].to_numpy() < 0) \
        | (ts < np.datetime64(start)) | (ts >= np.datetime64(end))
    rejected = np.bincount(code[bad], minlength=n)
    keep = frame[~bad] if bad.any() else frame
    return keep, rejected

def main():
    syms = S.SyntheticProvider(universe=5000).list_symbols()
    # The batch gives exactly the provider's values.
    p = S.SyntheticProvider()
    f = fetch_many(syms[:50], 0, '2024-12-24', '2024-12-31')
    for i in (0, 17, 49):
        one = p.fetch(syms[i], '2024-12-24', '2024-12-31')
        mine = f[f.code == i].drop(columns='code').reset_index(drop=True)
        pd.testing.assert_frame_equal(one, mine)
    print("fetch_many equals fetch: ok")
    c0 = time.process_time()
    for i in range(0, 5000, 50):
        part = syms[i:i + 50]
        fr = fetch_many(part, 0, '2024-12-24', '2024-12-31')
        keep, rej = check_many(fr, len(part), '2024-12-24', '2025-01-01')
    cpu = time.process_time() - c0
    print(f"vectorised per chunk of 50: {cpu / 5000 * 1e3:.3f} ms CPU per symbol ({cpu:.2f}s for 5000), load {os.getloadavg()[0]:.1f}")
    chunks = plan_chunks(syms[:500], pd.Timestamp('2024-12-24'), pd.Timestamp('2025-01-01'), chunk_size=50)
    c0 = time.process_time()
    for ch in chunks:
        fetch_chunk(p, ch, Freq.DAY, Adjust.NONE)
    print(f"kdist fetch_chunk (no overlap check): {(time.process_time() - c0) / 500 * 1e3:.3f} ms CPU per symbol, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
