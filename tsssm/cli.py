"""The ``tsssm`` command.

``tsssm forecast`` fits a model and prints the forecast (mean and 80/95% intervals)::

    tsssm forecast                                   # the bundled Nile series, local level, 10 years
    tsssm forecast sales.csv --column y --horizon 12 --model local-linear-trend --seasonal 12 \\
        --output forecast.csv --plot forecast.png

The CSV's time column (``--time-column``, default the first column) becomes the index; dates are
parsed when they look like dates, and the frequency is inferred by :mod:`tsssm.data`. JAX's persistent compilation cache (``~/.cache/tsssm/jax`` or
``$TSSSM_CACHE_DIR``) makes the second run start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MODELS = ("local-level", "local-linear-trend", "smooth-trend", "arima")


def _configure_jax() -> None:
    """Settings for the command's own process (a library import never changes them).

    The persistent compilation cache makes the second run start fast. Asynchronous CPU dispatch
    and the multi-threaded Eigen pool are turned off: XLA's CPU runtime can hang in
    ``block_until_ready`` with them on small machines (jax-ml/jax issue 25861), and at these
    sizes they buy nothing.
    """
    flag = "--xla_cpu_multi_thread_eigen=false"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)

    cache = Path(os.environ.get("TSSSM_CACHE_DIR", Path.home() / ".cache" / "tsssm" / "jax"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _read_series(path: str, column: str | None, time_column: str | None):
    import pandas as pd

    from tsssm.errors import DataError

    frame = pd.read_csv(path)
    if frame.empty:
        raise DataError(f"{path} has no rows")
    time_column = frame.columns[0] if time_column is None else time_column
    if time_column not in frame.columns:
        raise DataError(f"--time-column {time_column!r} is not a column of {path}; columns: {list(frame.columns)}")
    times = frame.pop(time_column)
    if not pd.api.types.is_numeric_dtype(times):
        try:
            times = pd.to_datetime(times)
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot read the time column {time_column!r} of {path} as dates: {exc}") from exc
    frame.index = pd.Index(times, name=time_column)
    if column is None:
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if len(numeric) != 1:
            raise DataError(f"{path} has value columns {list(frame.columns)}: choose one with --column")
        column = numeric[0]
    if column not in frame.columns:
        raise DataError(f"--column {column!r} is not a column of {path}; columns: {list(frame.columns)}")
    return frame[column]


def _model(args):
    import tsssm

    common = {"random_state": 0}
    if args.model == "arima":
        order = tuple(int(v) for v in args.order.split(","))
        return tsssm.ARIMA(order=order, **common)
    level = {"local-level": "local level", "local-linear-trend": "local linear trend", "smooth-trend": "smooth trend"}[args.model]
    return tsssm.UnobservedComponents(level, seasonal=args.seasonal, **common)


def _forecast(args) -> int:
    import pandas as pd

    import tsssm

    y = tsssm.datasets.load_nile() if args.file is None else _read_series(args.file, args.column, args.time_column)
    model = _model(args).fit(y)
    fc = model.forecast(args.horizon, levels=(0.8, 0.95))
    table = pd.concat(
        [fc.mean.iloc[:, 0].rename("mean")]
        + [fc.interval(level).add_suffix(f"_{100 * level:g}") for level in (0.8, 0.95)],
        axis=1,
    )
    name = "Nile (bundled)" if args.file is None else f"{args.file}:{y.name}"
    print(f"{name}: {type(model).__name__} {args.model}, log-likelihood {model.log_likelihood_:.4f}")
    print(model.summary()[["estimate", "std_error"]].to_string())
    print()
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 120):
        print(table.to_string())
    if args.output:
        fc.to_frame().to_csv(args.output, index=False)
        print(f"\nwrote {args.output}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        fig = fc.plot(history=y)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsssm", description="Probabilistic time series with state-space models.")
    sub = parser.add_subparsers(dest="command", required=True)
    fc = sub.add_parser("forecast", help="fit a model and print its forecast with 80/95%% intervals")
    fc.add_argument("file", nargs="?", help="CSV file (default: the bundled Nile series)")
    fc.add_argument("--column", help="value column to forecast (default: the only numeric one)")
    fc.add_argument("--time-column", help="time column (default: the first column)")
    fc.add_argument("--horizon", type=int, default=10, help="steps ahead (default 10)")
    fc.add_argument("--model", choices=MODELS, default="local-level")
    fc.add_argument("--seasonal", type=int, default=None, help="add a seasonal component of this period")
    fc.add_argument("--order", default="1,1,1", help="ARIMA order p,d,q (with --model arima)")
    fc.add_argument("--output", help="write the tidy forecast table to this CSV")
    fc.add_argument("--plot", help="write a fan chart to this PNG (needs matplotlib)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "forecast" and args.horizon <= 0:
        print(f"tsssm: error: --horizon must be a positive number of steps, got {args.horizon}", file=sys.stderr)
        return 2
    _configure_jax()
    from tsssm.errors import DataError

    try:
        return _forecast(args)
    except (DataError, FileNotFoundError) as exc:
        print(f"tsssm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
