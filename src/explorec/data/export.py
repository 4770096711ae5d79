"""Export a split so that other tools (RecBole, scripts) can run on the identical data."""

from __future__ import annotations

from pathlib import Path

from explorec._io import atomic_path, atomic_write_json
from explorec.data.readers import write_atomic
from explorec.data.splits import Split


def export_split(split: Split, output: str | Path, *, name: str) -> list[Path]:
    """Write ``{train,valid,test}.csv`` and RecBole ``NAME.{train,valid,test}.inter`` files.

    Ids are the external ids. A ``split.json`` records the protocol and seed.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for part in ("train", "valid", "test"):
        frame = getattr(split, part).to_frame()
        csv_path = output / f"{part}.csv"
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(csv_path)
        atomic = frame.rename(columns={"user": "user_id", "item": "item_id"})
        types = {"user_id": "token", "item_id": "token"}
        if "rating" in atomic:
            types["rating"] = "float"
        if "timestamp" in atomic:
            types["timestamp"] = "float"
        inter_path = output / f"{name}.{part}.inter"
        write_atomic(atomic, types, inter_path)
        written.append(inter_path)
    meta = output / "split.json"
    atomic_write_json(meta, {"dataset": name, **split.describe()})
    written.append(meta)
    return written
