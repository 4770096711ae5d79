"""Hyper-parameter search on validation NDCG@10 with Optuna (seeded TPE).

``tune_model`` fits a registered model once per trial on the split's training part and
scores the validation part (full ranking, training items excluded). The model's current
defaults are always trial 0, so the result is never worse than the defaults on validation.
Search spaces live here, one function per model; ``explorec tune`` is the command line face.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from explorec.data.catalog import ItemCatalog
from explorec.data.splits import Split
from explorec.errors import ExploRecError
from explorec.evaluate.protocol import evaluate_model, validator
from explorec.models.registry import create_model, default_params, model_class


def _ials(t: Any) -> dict[str, Any]:
    return {"factors": t.suggest_categorical("factors", [64, 128, 256]),
            "alpha": t.suggest_float("alpha", 1.0, 30.0, log=True),
            "reg": t.suggest_float("reg", 0.3, 30.0, log=True),
            "reg_exponent": t.suggest_float("reg_exponent", 0.0, 1.0),
            "iterations": t.suggest_int("iterations", 8, 20)}


def _ease(t: Any) -> dict[str, Any]:
    return {"reg": t.suggest_float("reg", 10.0, 5000.0, log=True)}


def _slim(t: Any) -> dict[str, Any]:
    return {"l1": t.suggest_float("l1", 0.01, 50.0, log=True),
            "l2": t.suggest_float("l2", 10.0, 2000.0, log=True)}


def _rp3beta(t: Any) -> dict[str, Any]:
    return {"alpha": t.suggest_float("alpha", 0.2, 2.0),
            "beta": t.suggest_float("beta", 0.0, 1.0),
            "k": t.suggest_int("k", 10, 500, log=True),
            "normalize": t.suggest_categorical("normalize", [False, True])}


def _itemknn(t: Any) -> dict[str, Any]:
    return {"k": t.suggest_int("k", 10, 500, log=True),
            "shrink": t.suggest_float("shrink", 0.0, 100.0),
            "alpha": t.suggest_float("alpha", 0.3, 1.0),
            "user_weighting": t.suggest_categorical("user_weighting", ["none", "iuf"])}


def _bpr(t: Any) -> dict[str, Any]:
    return {"factors": t.suggest_categorical("factors", [32, 64, 128]),
            "lr": t.suggest_float("lr", 1e-3, 2e-2, log=True),
            "reg": t.suggest_float("reg", 1e-4, 5e-2, log=True),
            "n_negatives": t.suggest_int("n_negatives", 1, 8),
            "batch_size": t.suggest_categorical("batch_size", [1024, 2048, 4096])}


def _lightgcn(t: Any) -> dict[str, Any]:
    return {"layers": t.suggest_int("layers", 1, 4),
            "lr": t.suggest_float("lr", 2e-3, 3e-2, log=True),
            "reg": t.suggest_float("reg", 1e-5, 1e-2, log=True),
            "n_negatives": t.suggest_int("n_negatives", 1, 8)}


def _multvae(t: Any) -> dict[str, Any]:
    return {"hidden": t.suggest_categorical("hidden", [300, 600]),
            "latent": t.suggest_categorical("latent", [32, 64, 128, 200]),
            "dropout": t.suggest_float("dropout", 0.2, 0.7),
            "anneal_cap": t.suggest_float("anneal_cap", 0.05, 1.0, log=True),
            "lr": t.suggest_float("lr", 3e-4, 3e-3, log=True),
            "batch_size": t.suggest_categorical("batch_size", [32, 64, 128])}


def _neumf(t: Any) -> dict[str, Any]:
    return {"factors": t.suggest_categorical("factors", [16, 32, 64]),
            "lr": t.suggest_float("lr", 5e-4, 5e-3, log=True),
            "n_negatives": t.suggest_int("n_negatives", 2, 8),
            "dropout": t.suggest_float("dropout", 0.0, 0.5),
            "batch_size": t.suggest_categorical("batch_size", [1024, 2048, 4096])}


def _cfgan(t: Any) -> dict[str, Any]:
    return {"dropout": t.suggest_float("dropout", 0.2, 0.8),
            "zr_ratio": t.suggest_float("zr_ratio", 0.1, 0.9),
            "pm_ratio": t.suggest_float("pm_ratio", 0.1, 0.9),
            "zr_weight": t.suggest_float("zr_weight", 0.01, 1.0, log=True),
            "lr": t.suggest_float("lr", 3e-4, 3e-3, log=True),
            "batch_size": t.suggest_categorical("batch_size", [32, 64, 128])}


def _sequential(t: Any) -> dict[str, Any]:
    return {"dim": t.suggest_categorical("dim", [32, 64, 128]),
            "max_len": t.suggest_categorical("max_len", [20, 50, 100]),
            "dropout": t.suggest_float("dropout", 0.1, 0.6),
            "lr": t.suggest_float("lr", 5e-4, 5e-3, log=True)}


SEARCH_SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ials": _ials, "ease": _ease, "slim": _slim, "rp3beta": _rp3beta, "itemknn": _itemknn,
    "bpr": _bpr, "lightgcn": _lightgcn, "multvae": _multvae, "neumf": _neumf,
    "cfgan": _cfgan, "gru4rec": _sequential, "sasrec": _sequential,
}


def default_split_for(model: str) -> str:
    """``loo`` for next-item models, ``ratio`` (RecBole's default protocol) for the rest."""
    return "loo" if getattr(model_class(model), "sequential", False) else "ratio"


def run_trial(model: str, params: dict[str, Any], split: Split,
              catalog: ItemCatalog | None = None) -> dict[str, Any]:
    """Fit ``model`` with ``params`` on the split's training part and score validation
    NDCG@10: ``{"value", "fit_seconds"[, "best_epoch"]}`` (what one tuning trial measures; runs
    in this process or on a Dask worker)."""
    t0 = time.perf_counter()
    m = create_model(model, **params).fit(split.train, catalog=catalog, split=split,
                                          validate=validator(split))
    out: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - t0, 3)}
    out["value"] = evaluate_model(m, split, part="valid", ks=(10,),
                                  metrics=("ndcg",)).metrics["ndcg@10"]
    tr = getattr(m, "train_result_", None)
    if tr is not None:
        out["best_epoch"] = tr.best_epoch
    return out


def tune_model(model: str, split: Split, *, trials: int = 30, seed: int = 2020,
               catalog: ItemCatalog | None = None, fixed: dict[str, Any] | None = None,
               timeout: float | None = None,
               callback: Callable[[int, float, dict[str, Any]], None] | None = None,
               batch: int = 1, client: Any = None) -> dict[str, Any]:
    """Search ``model``'s parameters (``SEARCH_SPACES[model]``) on validation NDCG@10.

    ``fixed`` parameters are passed to every trial (and win over the search space). Trial 0
    is the model's current defaults. Returns the JSON-ready result: best parameters (only
    the searched ones) and value, the defaults' value, and every trial.

    Trials run in batches of ``batch``: the sampler proposes ``batch`` trials (``study.ask``),
    they are fitted and scored (on ``client``'s Dask workers when given, see
    :mod:`explorec.scale`; the split and catalog go to each worker once), and their values
    are told back in trial order. The proposals depend on the batch size (a batch's trials
    are sampled without each other's values), not on where they run: the same ``batch`` gives
    the same trials with or without a client (for fits that do not depend on the BLAS thread
    count: workers run one thread, and ials/slim differ in the last bits between 1 and 2);
    ``batch=1`` is Optuna's sequential search.
    ``timeout`` stops starting batches after that many seconds.
    """
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tuning needs optuna: pip install 'explorec[zoo]'") from e
    from functools import partial

    from explorec import scale

    if model not in SEARCH_SPACES:
        raise ExploRecError(f"no search space for model {model!r}; tunable: "
                            f"{', '.join(sorted(SEARCH_SPACES))}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    if len(split.valid) == 0:
        raise ExploRecError(f"split {split.name!r} has no validation part to tune on")
    fixed = dict(fixed or {})
    space = SEARCH_SPACES[model]
    klass = model_class(model)
    if "seed" in klass._param_names():
        fixed.setdefault("seed", seed)
    if "progress" in klass._param_names():
        fixed.setdefault("progress", False)
    defaults = default_params(model)
    records: list[dict[str, Any]] = []

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    # trial 0: the current defaults, restricted to the searched names
    start = {**klass().get_params(), **defaults}
    study.enqueue_trial({k: start[k] for k in _space_names(space) if k in start})
    remote_split, remote_catalog = scale.share([split, catalog], client=client)
    one = partial(run_trial, model)
    t_start = time.perf_counter()
    while len(records) < trials and (timeout is None
                                     or time.perf_counter() - t_start <= timeout):
        asked = [study.ask() for _ in range(min(batch, trials - len(records)))]
        try:
            outcomes = scale.gather(scale.submit(
                one, [({**space(t), **fixed}, remote_split, remote_catalog) for t in asked],
                client=client), client=client)
        except BaseException:
            for t in asked:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        for t, got in zip(asked, outcomes, strict=True):
            value = got["value"]
            rec = {"trial": t.number, "params": t.params, "valid_ndcg@10": value,
                   "fit_seconds": got["fit_seconds"]}
            if "best_epoch" in got:
                rec["best_epoch"] = got["best_epoch"]
            records.append(rec)
            if callback is not None:
                callback(t.number, value, t.params)
            study.tell(t, value)
    best = study.best_trial
    default_value = records[0]["valid_ndcg@10"] if records else None
    return {"model": model, "split": split.name, "seed": seed, "trials": len(records),
            "batch": batch, "metric": "valid ndcg@10", "best_params": dict(best.params),
            "best_value": best.value, "default_value": default_value, "fixed": fixed,
            "history": records}


def _space_names(space: Callable[[Any], dict[str, Any]]) -> list[str]:
    """Parameter names a search space suggests (by running it on a recording trial)."""

    class Recorder:
        def __init__(self) -> None:
            self.names: list[str] = []

        def _rec(self, name: str, *args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            choices = args[0] if args else kwargs.get("choices")
            if isinstance(choices, list | tuple):
                return choices[0]
            return args[0] if args else kwargs.get("low")

        suggest_float = suggest_int = suggest_categorical = _rec

    r = Recorder()
    space(r)
    return r.names
