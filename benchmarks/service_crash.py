"""Crash test of the service: kill -9 while writes stream in, restart, verify every acknowledged
write is present and applied once (see :mod:`explorec.serve.crash`).

    python benchmarks/service_crash.py --artifact DIR --cycles 20 [--store redis://127.0.0.1:6379/0]

Without ``--artifact`` a small ML-100K artifact (EASE + LinUCB, TF-IDF vectors) is trained
into ``--work`` first. Exit status 0 when nothing acknowledged was lost or applied twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path, default=None)
    p.add_argument("--store", default=None, help="default: a fresh SQLite file in --work")
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from explorec.serve.crash import crash_test

    work = a.work or Path(tempfile.mkdtemp(prefix="explorec-crash-"))
    artifact = a.artifact
    if artifact is None:
        from explorec.serve.artifact import train_artifact

        artifact = train_artifact(work / "artifact", dataset="ml-100k", model="ease", policy="linucb",
                                  encoder="tfidf")
    report = crash_test(artifact, store=a.store, cycles=a.cycles, clients=a.clients, directory=work,
                        seed=a.seed, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
