"""Batch work on a Dask cluster: top-k for every user, full-ranking evaluation, fan-outs.

``scheduler`` everywhere: ``None`` or ``"single"`` (this process, the default),
``"processes"`` (a :class:`distributed.LocalCluster` with one single-threaded worker per
core) or ``"tcp://HOST:8786"`` (an existing cluster; see docs/scale.md). The fitted model
goes to every worker once per client (``Client.scatter(..., broadcast=True)``, kept for
later calls with the same objects), users are split into
contiguous partitions, and the results are put back in user order, so they are identical to
the single-process run: each user's list and metrics depend on that user alone (tie keys
are per (user, item)).

Models travel to workers through Dask's own serialisation, inside the user's cluster; the
artifacts a user loads stay the safe JSON + ``.npy`` format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.ranking import DEFAULT_SEED

#: per client: (id of each object sent) -> its future on every worker, so that a model
#: ranked in many chunks is sent once
_SCATTERED: dict[int, dict[tuple[int, ...], Any]] = {}


def _send(client: Any, objs: list[Any]) -> list[Any]:
    cache = _SCATTERED.setdefault(id(client), {})
    key = tuple(id(o) for o in objs)
    if key not in cache:
        cache[key] = (objs, client.scatter(objs, broadcast=True, hash=False))
    return cache[key][1]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("a Dask scheduler needs dask.distributed: pip install "
                          "'explorec[scale]'") from e
    return distributed


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (None for single process); a LocalCluster
    started here is closed on exit."""
    if scheduler in (None, "", "single"):
        yield None
        return
    dist = _distributed()
    if scheduler == "processes":
        workers = n_workers or os.cpu_count() or 1
        with dist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None) as cluster, dist.Client(cluster) as client:
            try:
                yield client
            finally:
                _SCATTERED.pop(id(client), None)
        return
    if not str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ExploRecError(f"--scheduler {scheduler!r}: use single, processes or the address of "
                            "a Dask scheduler (tcp://HOST:8786)")
    try:
        client = dist.Client(scheduler, timeout="10s")
    except OSError as e:
        raise ExploRecError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from e
    try:
        yield client
    finally:
        _SCATTERED.pop(id(client), None)
        client.close()


def partitions(users: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """``users`` in ``n_parts`` contiguous, nearly equal pieces (empty ones dropped)."""
    users = np.asarray(users, dtype=np.int64)
    return [p for p in np.array_split(users, max(1, int(n_parts))) if len(p)]


def _n_parts(client: Any, n_parts: int | None) -> int:
    if n_parts:
        return int(n_parts)
    workers = len(client.scheduler_info().get("workers", {})) if client is not None else 1
    return max(1, 4 * workers)


def _recommend_part(model: Any, users: np.ndarray, k: int, exclude: Any, seed: int,
                    candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from explorec.ranking import ShortListWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortListWarning)
        return model.recommend(users, k, exclude=exclude, seed=seed, candidates=candidates)


def recommend(model: Any, users: np.ndarray, k: int, *, client: Any = None,
              exclude: sp.csr_matrix | None = None, seed: int = DEFAULT_SEED,
              candidates: np.ndarray | None = None, n_parts: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``model.recommend(users, k)`` over user partitions on ``client``'s workers (in this
    process without one); the same (items, scores) as one call, padded to the widest part."""
    users = np.asarray(users, dtype=np.int64)
    if exclude is None:
        exclude = model.user_items_
    if client is None:
        return _recommend_part(model, users, k, exclude, seed, candidates)
    remote_model, remote_ex = _send(client, [model, exclude])
    futures = [client.submit(_recommend_part, remote_model, part, k, remote_ex, seed,
                             candidates, pure=False) for part in partitions(users, _n_parts(client, n_parts))]
    results = client.gather(futures)
    width = max((r[0].shape[1] for r in results), default=0)
    items = np.full((len(users), width), -1, dtype=np.int64)
    scores = np.full((len(users), width), -np.inf)
    row = 0
    for top, vals in results:
        items[row:row + len(top), :top.shape[1]] = top
        scores[row:row + len(top), :top.shape[1]] = vals
        row += len(top)
    return items, scores


def _evaluate_part(model: Any, split: Any, users: np.ndarray, part: str, ks: tuple[int, ...],
                   metrics: tuple[str, ...]) -> Any:
    from explorec.evaluate.protocol import evaluate_scores, part_matrices

    relevant, excluded, candidates = part_matrices(split, part)
    return evaluate_scores(model.score, relevant, excluded, train=split.train.matrix(), ks=ks,
                           metrics=metrics, candidates=candidates, seed=split.seed,
                           users=users, parts=True)


def evaluate(model: Any, split: Any, *, client: Any = None, part: str = "test",
             ks: tuple[int, ...] = (10, 20), metrics: tuple[str, ...] | None = None,
             n_parts: int | None = None) -> Any:
    """:func:`explorec.evaluate.evaluate_model` with users partitioned over ``client``'s
    workers; per-user metrics are put back in user order and summarised once, so the result
    equals the single-process one."""
    from explorec.evaluate.metrics import DEFAULT_METRICS
    from explorec.evaluate.protocol import combine_parts, evaluate_model, part_matrices

    metrics = tuple(metrics or DEFAULT_METRICS)
    if client is None:
        return evaluate_model(model, split, part=part, ks=ks, metrics=metrics)
    relevant, _, candidates = part_matrices(split, part)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    remote_model, remote_split = _send(client, [model, split])
    futures = [client.submit(_evaluate_part, remote_model, remote_split, p, part, ks, metrics,
                             pure=False) for p in partitions(users, _n_parts(client, n_parts))]
    pieces = client.gather(futures)
    return combine_parts(pieces, train=split.train.matrix(), ks=ks, metrics=metrics,
                         candidates=candidates, n_items=relevant.shape[1])


def fan_out(fn: Callable[..., Any], args: Sequence[Any], *, client: Any = None) -> list[Any]:
    """``[fn(a) for a in args]``, on the cluster when there is one (seeds, policies, trials),
    results in the order of ``args``."""
    if client is None:
        return [fn(a) for a in args]
    return client.gather(client.map(fn, list(args), pure=False))


__all__ = ["dask_client", "evaluate", "fan_out", "partitions", "recommend"]
