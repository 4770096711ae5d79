"""The grid that chose the `itemknn` defaults: validation NDCG@10 on ML-100K, seed 2020.

    python benchmarks/knn_grid.py

Prints validation and test NDCG@10 for each setting; the default is the best on validation
(test is shown for information only, never used to choose).
"""

from __future__ import annotations

import itertools

from rich.console import Console
from rich.table import Table

from explorec.data import load_dataset, make_split
from explorec.evaluate import evaluate_model
from explorec.models import create_model

GRID = {"k": [50, 100, 200], "alpha": [0.5, 0.6, 0.7, 0.8], "user_weighting": ["none", "iuf"],
        "shrink": [0.0, 10.0]}


def main() -> None:
    split = make_split(load_dataset("ml-100k").interactions, "ratio", seed=2020)
    rows = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        model = create_model("itemknn", **params).fit(split.train)
        valid = evaluate_model(model, split, part="valid", metrics=("ndcg",)).metrics["ndcg@10"]
        test = evaluate_model(model, split, part="test", metrics=("ndcg",)).metrics["ndcg@10"]
        rows.append((valid, test, params))
    rows.sort(key=lambda r: -r[0])
    table = Table(title="itemknn grid, ML-100K ratio split, seed 2020 (sorted by validation)")
    for c in ("valid ndcg@10", "test ndcg@10", *GRID):
        table.add_column(c)
    for valid, test, params in rows[:15]:
        table.add_row(f"{valid:.4f}", f"{test:.4f}", *(str(params[k]) for k in GRID))
    Console().print(table)


if __name__ == "__main__":
    main()
