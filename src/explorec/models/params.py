"""Parameter checks for models: types from the defaults, ranges declared per model.

``create_model`` and ``fit`` both run :func:`validate_params`, so a bad value fails with one
line that names the model and the parameter before any data is read:

>>> from explorec.models import create_model
>>> create_model("ease", reg=-5)
Traceback (most recent call last):
...
ValueError: ease.reg must be > 0, got -5
>>> create_model("itemknn", k="abc")
Traceback (most recent call last):
...
ValueError: itemknn.k must be an integer, got 'abc'
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from typing import Any

# Ranges that hold for a parameter of this name in every model that has one; models declare
# others (and overrides) in their ``param_constraints`` class attribute.
COMMON_CONSTRAINTS: dict[str, str] = {
    "epochs": ">= 1", "iterations": ">= 1", "factors": ">= 1", "dim": ">= 1", "hidden": ">= 1",
    "latent": ">= 1", "layers": ">= 1", "heads": ">= 1", "max_len": ">= 1",
    "max_history": ">= 1", "batch_size": ">= 1", "n_negatives": ">= 1", "patience": ">= 0",
    "lr": "> 0", "d_lr": "> 0", "weight_decay": ">= 0", "shrink": ">= 0", "l1": ">= 0",
    "l2": ">= 0", "dropout": "[0, 1)", "id_dropout": "[0, 1)", "k": ">= 1", "seed": ">= 0",
}


def _describe(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _allowed_types(klass: type, name: str, default: Any) -> tuple[type, ...] | None:
    """The Python types a parameter accepts, from its annotation or else its default."""
    try:
        hints = typing.get_type_hints(klass.__init__)
    except Exception:  # unresolvable annotation: fall back to the default's type
        hints = {}
    hint = hints.get(name)
    if hint is not None:
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
            typing.get_origin(hint) is typing.Union else (hint,)
        out: list[type] = []
        for a in args:
            origin = typing.get_origin(a) or a
            if origin is type(None):
                out.append(type(None))
            elif isinstance(origin, type):
                out.append(origin)
        if out and object not in out and typing.Any not in args:
            return tuple(out)
    if default is inspect.Parameter.empty or default is None:
        return None
    return (type(default),)


def _check_type(model: str, name: str, value: Any, allowed: tuple[type, ...]) -> Any:
    where = f"{model}.{name}"
    if value is None:
        if type(None) in allowed:
            return None
        raise ValueError(f"{where} may not be null")
    if bool in allowed and isinstance(value, bool):
        return value
    if isinstance(value, bool):
        kinds = {int: "an integer", float: "a number"}
        for t in (float, int):
            if t in allowed:
                raise ValueError(f"{where} must be {kinds[t]}, got {value}")
        if bool not in allowed and str not in allowed:
            raise ValueError(f"{where} must not be true/false, got {value}")
    if int in allowed and isinstance(value, int):
        return value
    if float in allowed and isinstance(value, int | float):
        if not math.isfinite(float(value)):
            raise ValueError(f"{where} must be a finite number, got {value}")
        return float(value)
    if int in allowed and isinstance(value, float) and value.is_integer():
        return int(value)
    if str in allowed and isinstance(value, str):
        return value
    if (tuple in allowed or list in allowed) and isinstance(value, list | tuple):
        return tuple(value) if tuple in allowed else list(value)
    if dict in allowed and isinstance(value, dict):
        return value
    if int in allowed and float not in allowed:
        raise ValueError(f"{where} must be an integer, got {_describe(value)}")
    if float in allowed:
        raise ValueError(f"{where} must be a number, got {_describe(value)}")
    if bool in allowed:
        raise ValueError(f"{where} must be true or false, got {_describe(value)}")
    if str in allowed:
        raise ValueError(f"{where} must be a string, got {_describe(value)}")
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ValueError(f"{where} must be {names}, got {_describe(value)}")


def _check_range(model: str, name: str, value: Any, rule: str) -> None:
    where = f"{model}.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, list | tuple):
            for v in value:
                _check_range(model, name, v, rule)
        return
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)  # report -5, not -5.0, for a float parameter given as an integer
    rule = rule.strip()
    if rule.startswith(("[", "(")):
        lo_s, hi_s = rule[1:-1].split(",")
        lo, hi = float(lo_s), float(hi_s)
        ok_lo = value >= lo if rule[0] == "[" else value > lo
        ok_hi = value <= hi if rule[-1] == "]" else value < hi
        if not (ok_lo and ok_hi):
            raise ValueError(f"{where} must be in {rule}, got {_describe(value)}")
        return
    op, _, bound_s = rule.partition(" ")
    bound = float(bound_s)
    ok = {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound}[op]
    if not ok:
        raise ValueError(f"{where} must be {rule}, got {_describe(value)}")


def validate_params(model: str, klass: type, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` for the model class; returns them with numbers coerced (``500`` for
    a float parameter becomes ``500.0``). Raises ValueError naming ``model.parameter``."""
    sig = inspect.signature(klass.__init__)
    known = [p for p in sig.parameters if p != "self"]
    unknown = [p for p in params if p not in known]
    if unknown:
        raise ValueError(f"{model} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(known) or '(none)'}")
    constraints = {**COMMON_CONSTRAINTS, **getattr(klass, "param_constraints", {})}
    out = {}
    for name, value in params.items():
        allowed = _allowed_types(klass, name, sig.parameters[name].default)
        if allowed is not None:
            value = _check_type(model, name, value, allowed)
        options = constraints.get(name)
        if isinstance(options, tuple):
            if value not in options:
                raise ValueError(f"{model}.{name} must be one of {', '.join(map(str, options))}, "
                                 f"got {_describe(value)}")
        elif options and value is not None:
            _check_range(model, name, value, options)
        out[name] = value
    return out


# ---------------------------------------------------------------------------- documentation
# Meanings of parameters many models share; a model's docstring line for them may only say
# "training settings" or "as for every neural model".
COMMON_DOCS: dict[str, str] = {
    "seed": "random seed (initialisation, sampling, batches); the same seed gives the same model",
    "device": "None (CUDA when available, else CPU), 'cpu' or 'cuda'",
    "progress": "show a progress bar per epoch",
    "epochs": "most training epochs (early stopping on validation NDCG@10 when fit gets a split)",
    "patience": "epochs without a better validation NDCG@10 before training stops",
    "lr": "learning rate (Adam)",
    "weight_decay": "L2 weight decay of the optimiser",
    "batch_size": "training examples per optimiser step",
    "tensorboard_dir": "write training curves for TensorBoard here (None: off)",
}


def parameter_docs(klass: type) -> dict[str, str]:
    """``{parameter: one-line meaning}`` from the class docstring's numpydoc ``Parameters``
    section (``name : meaning`` lines; ``a, b : meaning`` documents several), completed by
    :data:`COMMON_DOCS` for shared training parameters."""
    doc = inspect.getdoc(klass) or ""
    lines = doc.splitlines()
    out: dict[str, str] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        start = len(lines)
    current: list[str] = []
    text = ""

    def flush() -> None:
        one = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(text.split())).replace("``", "")
        for n in current:
            generic = len(current) > 2 or one.startswith("as for every")
            out[n] = COMMON_DOCS[n] if generic and n in COMMON_DOCS else one
    for line in lines[start:]:
        if not line.strip():
            continue
        if line.startswith((" ", "\t")):
            text += " " + line.strip()
            continue
        if " : " not in line:
            break
        flush()
        names, _, text = line.partition(" : ")
        current = [n.strip() for n in names.split(",")]
    flush()
    for name in inspect.signature(klass.__init__).parameters:
        if name != "self" and name not in out and name in COMMON_DOCS:
            out[name] = COMMON_DOCS[name]
    return out
