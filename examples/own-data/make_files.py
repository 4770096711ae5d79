"""Write a "your own data" example: ML-100K's ratings as a shop's CSV, and an items file.

    python examples/own-data/make_files.py [OUTPUT_DIR]

``ratings.csv`` has the columns ``customer,product,ts,stars`` (rows shuffled, as an export
from another system would be); ``items.csv`` has ``sku,name,description`` with free text.
The data is MovieLens-100K (fetched and verified by ``explorec data fetch ml-100k``), renamed,
so that results can be compared with the registered dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

from explorec.data import load_dataset


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("ml-100k")
    ratings = ds.interactions.to_frame().sample(frac=1.0, random_state=7)
    ratings = ratings.rename(columns={"user": "customer", "item": "product", "rating": "stars",
                                      "timestamp": "ts"})[["customer", "product", "ts", "stars"]]
    ratings["ts"] = ratings["ts"].astype("int64")
    ratings["stars"] = ratings["stars"].astype("int64")
    ratings.to_csv(out / "ratings.csv", index=False)
    cat = ds.catalog.frame
    items = cat.reset_index().rename(columns={"item": "sku", "title": "name"})
    items["description"] = [
        f"A {year} film. Genres: {', '.join(genres)}." if year else
        f"A film. Genres: {', '.join(genres)}."
        for year, genres in zip(cat["year"].fillna(""), cat["genres"], strict=True)]
    items[["sku", "name", "description"]].to_csv(out / "items.csv", index=False)
    print(f"wrote {out / 'ratings.csv'} ({len(ratings):,} rows) and {out / 'items.csv'} "
          f"({len(items):,} items)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
