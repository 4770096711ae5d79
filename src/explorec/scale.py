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

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec._optional import require
from explorec.errors import ExploRecError
from explorec.ranking import DEFAULT_SEED

#: per client: id of each object sent -> (the object, its future on every worker), so that a
#: model ranked in many chunks, or a split shared by many models, is sent once (the object is
#: kept so that its id is not reused while the future lives)
_SCATTERED: dict[int, dict[int, tuple[Any, Any]]] = {}


def _send(client: Any, objs: list[Any]) -> list[Any]:
    cache = _SCATTERED.setdefault(id(client), {})
    missing = list({id(o): o for o in objs if id(o) not in cache}.values())
    if missing:
        for o, fut in zip(missing, client.scatter(missing, broadcast=True, hash=False), strict=True):
            cache[id(o)] = (o, fut)
    return [cache[id(o)][1] for o in objs]


#: glibc malloc settings for the workers explorec starts (bytes). Dask's default sets only
#: ``MALLOC_TRIM_THRESHOLD_`` (64 KiB), and setting it switches off glibc's moving mmap
#: threshold: every array over 128 KiB is then a fresh mmap, faulted in page by page and
#: unmapped when freed. Scoring blocks are tens of MB, allocated once per tile: measured on
#: the 20M-event batch job, 10.5 million page faults and 36 s of system time with Dask's
#: default against 0.36 million and 10 s with these (64.6 s -> 48.5 s; one process 47.8 s).
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 64 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}


def worker_environ() -> dict[str, Any]:
    """The Dask config for the workers of a :func:`dask_client` ``LocalCluster``: Dask's own
    pre-spawn environment (one BLAS thread, ...) with :data:`WORKER_MALLOC`."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(WORKER_MALLOC)
    return {"distributed.nanny.pre-spawn-environ": env}


def _distributed() -> Any:
    return require("distributed", "a Dask scheduler", "pip install 'explorec[scale]'")


def check_scheduler(scheduler: str | None) -> str | None:
    """``scheduler`` checked before any work starts: None for this process (None, "" or
    "single"), else the value; anything but ``processes`` or a scheduler address raises."""
    if scheduler in (None, "", "single"):
        return None
    if scheduler != "processes" and not str(scheduler).startswith(
            ("tcp://", "tls://", "inproc://", "ucx://")):
        raise ExploRecError(f"--scheduler {scheduler!r}: use single, processes or the address of "
                            "a Dask scheduler (tcp://HOST:8786)")
    return scheduler


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (None for single process); a LocalCluster
    started here is closed on exit."""
    if check_scheduler(scheduler) is None:
        yield None
        return
    dist = _distributed()
    if scheduler == "processes":
        import dask

        workers = n_workers or os.cpu_count() or 1
        with dask.config.set(worker_environ()), dist.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None) as cluster, dist.Client(cluster) as client:
            try:
                yield client
            finally:
                _SCATTERED.pop(id(client), None)
        return
    try:
        client = dist.Client(scheduler, timeout="10s")
    except OSError as e:
        raise ExploRecError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from e
    try:
        yield client
    finally:
        _SCATTERED.pop(id(client), None)
        client.close()


def partitions(users: np.ndarray, n_parts: int, align: int = 1) -> list[np.ndarray]:
    """``users`` in at most ``n_parts`` contiguous, nearly equal pieces (empty ones dropped),
    each starting at a multiple of ``align``.

    Aligning pieces to the scoring block of the single-process run (``align``) makes every
    worker compute the same score blocks, the same BLAS calls on the same shapes: a matrix
    product's last bits can depend on the shape it is called with, and a tie order on them.
    """
    users = np.asarray(users, dtype=np.int64)
    align = max(1, int(align))
    blocks = -(-len(users) // align)
    n = max(1, min(int(n_parts), blocks))
    cuts = [align * int(c) for c in np.linspace(0, blocks, n + 1).round()]
    cuts[-1] = len(users)
    return [users[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def _n_parts(client: Any, n_parts: int | None) -> int:
    if n_parts:
        return int(n_parts)
    workers = len(client.scheduler_info().get("workers", {})) if client is not None else 1
    return max(1, 4 * workers)


#: users per scoring block of :func:`explorec.evaluate.protocol.evaluate_scores` (its default)
EVAL_BLOCK = 1024


def _score_block(model: Any) -> int:
    """Users per scoring block of ``model.recommend`` (its default batch size)."""
    from explorec.models.base import score_rows

    return score_rows(model.n_items, 2048)


def _recommend_part(model: Any, users: np.ndarray, k: int, exclude: Any, seed: int,
                    candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from explorec.ranking import ShortListWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortListWarning)
        return model.recommend(users, k, exclude=exclude, seed=seed, candidates=candidates)


def _compact(result: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A worker's (items, scores) in half the bytes where that loses nothing: int32 item ids,
    and float32 scores when every score is a float32 value (factor models' are)."""
    items, scores = result
    if items.size and int(items.max()) < 2 ** 31:
        items = items.astype(np.int32)
    small = scores.astype(np.float32)
    if np.array_equal(small, scores, equal_nan=True):
        scores = small
    return items, scores


def _recommend_compact(model: Any, users: np.ndarray, k: int, exclude: Any, seed: int,
                       candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    return _compact(_recommend_part(model, users, k, exclude, seed, candidates))


def recommend(model: Any, users: np.ndarray, k: int, *, client: Any = None,
              exclude: sp.csr_matrix | None = None, seed: int = DEFAULT_SEED,
              candidates: np.ndarray | None = None, n_parts: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``model.recommend(users, k)`` over user partitions on ``client``'s workers (in this
    process without one); the same (items, scores) as one call, padded to the widest part."""
    return recommend_later(model, users, k, client=client, exclude=exclude, seed=seed,
                           candidates=candidates, n_parts=n_parts)()


def recommend_later(model: Any, users: np.ndarray, k: int, *, client: Any = None,
                    exclude: sp.csr_matrix | None = None, seed: int = DEFAULT_SEED,
                    candidates: np.ndarray | None = None, n_parts: int | None = None
                    ) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """:func:`recommend` started now, its result collected by calling what this returns: on
    a cluster the workers rank while this process does other work (writes the previous
    chunk); without one the ranking runs when collected."""
    users = np.asarray(users, dtype=np.int64)
    if exclude is None:
        exclude = model.user_items_
    if client is None:
        return lambda: _recommend_part(model, users, k, exclude, seed, candidates)
    if exclude is model.user_items_:  # the workers' model copy has it: not sent twice
        (remote_model,), remote_ex = _send(client, [model]), None
    else:
        remote_model, remote_ex = _send(client, [model, exclude])
    futures = submit(_recommend_compact, [(remote_model, part, k, remote_ex, seed, candidates)
                                          for part in partitions(users, _n_parts(client, n_parts),
                                                                 align=_score_block(model))],
                     client=client)

    def collect() -> tuple[np.ndarray, np.ndarray]:
        results = gather(futures, client=client)
        width = max((r[0].shape[1] for r in results), default=0)
        items = np.full((len(users), width), -1, dtype=np.int64)
        scores = np.full((len(users), width), -np.inf)
        row = 0
        for top, vals in results:
            items[row:row + len(top), :top.shape[1]] = top
            scores[row:row + len(top), :top.shape[1]] = vals
            row += len(top)
        return items, scores

    return collect


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
    pieces = gather(submit(_evaluate_part, [(remote_model, remote_split, p, part, ks, metrics)
                                            for p in partitions(users, _n_parts(client, n_parts),
                                                                align=EVAL_BLOCK)],
                           client=client), client=client)
    return combine_parts(pieces, train=split.train.matrix(), ks=ks, metrics=metrics,
                         candidates=candidates, n_items=relevant.shape[1])


def fan_out(fn: Callable[..., Any], args: Sequence[Any], *, client: Any = None) -> list[Any]:
    """``[fn(a) for a in args]``, on the cluster when there is one (seeds, policies, trials),
    results in the order of ``args``; an error raised by ``fn`` on a worker is raised here as
    itself (see :func:`gather`)."""
    if client is None:
        return [fn(a) for a in args]
    return gather(submit(fn, [(a,) for a in args], client=client), client=client)


# ------------------------------------------------------------------ tasks with shared objects
class _Raised:
    """An exception caught on a worker, carried back as a task's value (so the worker logs no
    'Compute Failed' traceback and the caller gets the error itself)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _portable(error: Exception) -> BaseException:
    """``error`` when it survives pickling (explorec's errors do), else an ExploRecError with
    its type and message."""
    import pickle

    try:
        pickle.dumps(error)
        # what unpickling will do on this side: call the reduce constructor, restore the state
        ctor, args, *rest = error.__reduce_ex__(2)
        rebuilt = ctor(*args)
        if rest and isinstance(rest[0], dict):
            rebuilt.__dict__.update(rest[0])
    except Exception:  # any failure to round-trip: send the text
        return ExploRecError(f"{type(error).__name__} on a Dask worker: {error}")
    return error


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    for a in args:  # a task this one depends on failed: pass its error on
        if isinstance(a, _Raised):
            return a
    try:
        return fn(*args)
    except Exception as e:  # re-raised by gather() in the caller
        e.__traceback__ = None
        return _Raised(_portable(e))


def n_workers(client: Any = None) -> int:
    """Workers of ``client``'s cluster (1 for this process)."""
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))


def share(objs: Sequence[Any], *, client: Any = None) -> list[Any]:
    """Each object on every worker once per client (futures to pass to :func:`submit`); the
    objects themselves without a client. Objects are remembered by identity: do not change one
    after sharing it, or :func:`release` it first so the next share sends the new state."""
    if client is None:
        return list(objs)
    return _send(client, list(objs))


def release(objs: Sequence[Any], *, client: Any = None) -> None:
    """Forget shared ``objs`` (their copies on the workers are freed once no task needs them)."""
    if client is None:
        return
    cache = _SCATTERED.get(id(client), {})
    for o in objs:
        cache.pop(id(o), None)


def submit(fn: Callable[..., Any], args: Sequence[Sequence[Any]], *, client: Any = None
           ) -> list[Any]:
    """``fn(*a)`` for each ``a`` in ``args``: futures on the cluster (left there, to be passed
    to later tasks or to :func:`gather`), values computed here without a client. Arguments
    may be futures from :func:`share` or from an earlier ``submit``."""
    if client is None:
        return [fn(*a) for a in args]
    return [client.submit(_guarded, fn, *a, pure=False) for a in args]


def gather(handles: Sequence[Any], *, client: Any = None) -> list[Any]:
    """The values of :func:`submit`'s handles, in order. An exception raised by a task on a
    worker is raised here as the same exception (type and message; an exception that cannot
    travel becomes an ExploRecError naming its type), not a Dask traceback."""
    if client is None:
        return list(handles)
    try:
        values = client.gather(list(handles))
    except _distributed().KilledWorker as e:
        raise ExploRecError(f"a Dask worker died while running a task ({e}); it may have run "
                            "out of memory: give the workers more (dask worker --memory-limit) "
                            "or use fewer per machine") from None
    for v in values:
        if isinstance(v, _Raised):
            raise v.error
    return values


__all__ = ["WORKER_MALLOC", "check_scheduler", "dask_client", "evaluate", "fan_out", "gather",
           "n_workers", "partitions", "recommend", "recommend_later", "release", "share", "submit",
           "worker_environ"]
