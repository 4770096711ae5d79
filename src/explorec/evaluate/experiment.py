"""One evaluation run: fit each model on the train part, score valid and test, collect a report.

The CLI, the quickstart and the benchmarks all call :func:`run_evaluation`; none of them
re-implements the protocol.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from explorec.data.catalog import ItemCatalog
from explorec.data.splits import Split
from explorec.errors import DataError
from explorec.evaluate.metrics import DEFAULT_METRICS
from explorec.evaluate.protocol import evaluate_model, users_to_evaluate, validator
from explorec.models.registry import create_model


@contextmanager
def _null_progress() -> Iterator[Any]:
    yield None


def run_evaluation(
    split: Split,
    models: Sequence[str],
    *,
    dataset: str,
    catalog: ItemCatalog | None = None,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    params: dict[str, dict[str, Any]] | None = None,
    progress: Any = None,
    measure_memory: bool = False,
    client: Any = None,
    baseline: str | None = None,
    significance: bool = True,
) -> dict[str, Any]:
    """Evaluate registered ``models`` on ``split``; returns the JSON-ready report.

    With ``significance`` each result gets a ``"significance"`` block per per-user test
    metric: the model against the best model by the primary metric (or against
    ``baseline``), paired over the test users (:func:`explorec.evaluate.significance.compare`:
    paired t and Wilcoxon tests, Holm-corrected across models, a seeded bootstrap interval of
    the mean difference); the report's ``"significance"`` says which reference, tests and
    seed. No metric changes.

    ``params`` overrides parameters per model name. ``progress`` is an optional
    ``rich.progress.Progress`` used to show fit and evaluation steps. With a Dask ``client``
    (:func:`explorec.scale.dask_client`) each model is fitted here and ranked on the workers
    over user partitions (:func:`explorec.scale.evaluate`): the same metrics, exactly.
    """
    from explorec import scale
    from explorec.runinfo import environment

    params = params or {}
    if baseline is not None and baseline not in models:
        raise ValueError(f"--baseline {baseline!r} is not one of the models evaluated "
                         f"({', '.join(models)})")
    results = []
    test_users: dict[str, Any] = {}  # model -> (users, per-user test metrics)
    n_valid = users_to_evaluate(split, "valid")
    n_test = users_to_evaluate(split, "test")
    if n_test == 0:
        raise DataError(f"split {split.name!r} (seed {split.seed}) of {dataset} leaves no test "
                        f"users ({len(split.train):,} train / {len(split.valid):,} valid / "
                        f"{len(split.test):,} test rows): nothing to evaluate. Users need enough "
                        "interactions to have held-out ones (loo: 3 or more), or choose another "
                        "split", source=split.train.source)
    validate = validator(split)  # early stopping: validation NDCG@10
    for name in models:
        model = create_model(name, **params.get(name, {}))
        task = progress.add_task(f"fit {name}", total=None) if progress else None
        t0 = time.perf_counter()
        model.fit(split.train, catalog=catalog, split=split, validate=validate)
        fit_seconds = time.perf_counter() - t0
        peak = None
        if measure_memory:  # a second, traced fit: tracing slows allocation, so not timed
            tracemalloc.start()
            create_model(name, **params.get(name, {})).fit(split.train, catalog=catalog,
                                                           split=split, validate=validate)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        if progress:
            progress.update(task, total=1, completed=1)
        parts = {}
        t1 = time.perf_counter()
        for part, n in (("valid", n_valid), ("test", n_test)):
            if n == 0:
                parts[part] = {}
                continue
            if part == "test" and getattr(model, "sequential", False):
                # next-item models read the validation items as the latest context of the
                # test items (RecBole's protocol for sequential models); no retraining
                model.extend_history(split.valid)
                scale.release([model], client=client)  # workers get the extended model
            t = progress.add_task(f"{part} {name}", total=n) if progress else None
            adv = (lambda m, t=t: progress.advance(t, m)) if progress else None
            if client is None:
                res = evaluate_model(model, split, part=part, ks=tuple(ks),
                                     metrics=tuple(metrics), progress=adv)
            else:
                res = scale.evaluate(model, split, client=client, part=part,
                                     ks=tuple(ks), metrics=tuple(metrics))
                if adv:
                    adv(n)
            parts[part] = res.metrics
            if part == "test" and significance:
                test_users[name] = (res.users, res.per_user)
        scale.release([model], client=client)
        eval_seconds = time.perf_counter() - t1
        entry: dict[str, Any] = {
            "model": name,
            "params": model.get_params(),
            "fit_seconds": round(fit_seconds, 4),
            "eval_seconds": round(eval_seconds, 4),
            "metrics": parts["test"],
            "valid_metrics": parts["valid"],
        }
        if peak is not None:
            entry["fit_peak_mib"] = round(peak, 2)
        results.append(entry)
    report = {
        "dataset": dataset,
        "split": split.name,
        "seed": split.seed,
        "split_info": split.describe(),
        "ks": list(ks),
        "results": results,
        "environment": environment(),
    }
    if significance and test_users:
        report["significance"] = _significance(results, test_users, baseline)
    return report


def _significance(results: list[dict[str, Any]], test_users: dict[str, Any],
                  baseline: str | None) -> dict[str, Any]:
    """Each result's ``"significance"`` block (in place); returns what was compared."""
    from explorec.evaluate.significance import compare, primary_metric

    shown = [n for n in (r["model"] for r in results) if n in test_users]
    primary = primary_metric(set().union(*(r["metrics"] for r in results)))
    per_user = {n: test_users[n][1] for n in shown}
    if primary not in set.intersection(*(set(v) for v in per_user.values())):
        primary = None  # e.g. only list metrics asked for: no per-user primary metric
    sig = compare(per_user, users={n: test_users[n][0] for n in shown}, reference=baseline,
                  primary=primary)
    models = sig.pop("models")
    for r in results:
        r["significance"] = models.get(r["model"], {})
    return sig
