"""Read a qlib directory with qlib itself and write what it read as JSON, for the tests.

Run by ``.venv-qlib/bin/python`` (pyqlib needs pandas < 3, kdist's venv has pandas 3)::

    qlib_read.py PROVIDER_URI OUT.json [--freq day] [--start D] [--end D] [SYMBOL ...]

No symbols: every instrument of ``D.instruments("all")``. The JSON holds qlib's calendar,
its instruments (``D.list_instruments``: code -> [[start, end], ...]), and ``D.features``
of ``$open $high $low $close $volume $factor $change $amount`` and the expression
``$close / $factor`` as rows ``[instrument, datetime, values...]``: each float32 value as
the exact float it is (NaN as null), with the frame's dtypes and index names.
"""

from __future__ import annotations

import argparse
import json
import math

FIELDS = ["$open", "$high", "$low", "$close", "$volume", "$factor", "$change", "$amount",
          "$close / $factor"]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("provider_uri")
    parser.add_argument("out")
    parser.add_argument("symbols", nargs="*")
    parser.add_argument("--freq", default="day")
    parser.add_argument("--start")
    parser.add_argument("--end")
    args = parser.parse_args(argv)

    import qlib
    from qlib.constant import REG_CN
    from qlib.data import D

    # One process: the check reads a few symbols, and a pool's start-up would dominate.
    qlib.init(provider_uri={args.freq: args.provider_uri}, region=REG_CN, kernels=1,
              joblib_backend="sequential", expression_cache=None, dataset_cache=None)
    calendar = D.calendar(start_time=args.start, end_time=args.end, freq=args.freq)
    listed = D.list_instruments(D.instruments("all"), start_time=args.start,
                                end_time=args.end, freq=args.freq, as_list=False)
    instruments = args.symbols or sorted(listed)
    frame = D.features(instruments, FIELDS, start_time=args.start, end_time=args.end,
                       freq=args.freq)

    def number(x):
        x = float(x)
        return None if math.isnan(x) else x

    rows = [[str(inst), str(ts), *map(number, values)]
            for (inst, ts), values in zip(frame.index, frame.to_numpy())]
    result = {
        "qlib": qlib.__version__,
        "calendar": [str(ts) for ts in calendar],
        "instruments": {code: [[str(a), str(b)] for a, b in spans]
                        for code, spans in sorted(listed.items())},
        "index": list(frame.index.names),
        "columns": list(frame.columns),
        "dtypes": [str(t) for t in frame.dtypes],
        "rows": rows,
    }
    with open(args.out, "w", encoding="utf-8") as fp:
        json.dump(result, fp)


if __name__ == "__main__":
    main()
