"""What every ``explorec`` command shares: consoles, errors, progress, flag parsing, the data
options (``--dataset``, ``--columns``, ``--items`` ...) and ``--config FILE``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)
# Pipes and CI logs default to 80 columns, which squeezes the leaderboard; use 140 there.
out = Console(width=None if sys.stdout.isatty() else 140)


def fail(e: BaseException | str) -> NoReturn:
    """One red line on stderr and exit code 2 (never a traceback)."""
    console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)


def note(message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)


# ------------------------------------------------------------------ progress
class LineProgress:
    """The subset of ``rich.progress.Progress`` the commands use, printing plain lines: one
    when a stage starts, one when it ends (with its time), and for long stages a line at
    every 10% (or 30 s) — what a log file or CI job should show."""

    def __init__(self, stream: Console) -> None:
        self.console = stream
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            if not task["done"] and exc[0] is None:
                self._finish(task)

    def _line(self, text: str) -> None:
        self.console.print(escape(text), soft_wrap=True, highlight=False)

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {"description": description, "total": total, "completed": 0.0,
                           "start": time.perf_counter(), "last": time.perf_counter(),
                           "step": 0, "done": False}
        self._line(f"{description} ...")
        return tid

    def _finish(self, task: dict[str, Any]) -> None:
        task["done"] = True
        self._line(f"{task['description']}: done in {time.perf_counter() - task['start']:.1f} s")

    def advance(self, tid: int, advance: float = 1) -> None:
        self.update(tid, advance=advance)

    def update(self, tid: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        task = self.tasks[tid]
        if description is not None:
            task["description"] = description
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        tot = task["total"]
        if task["done"] or not tot:
            return
        if task["completed"] >= tot:
            self._finish(task)
            return
        step = int(10 * task["completed"] / tot)
        now = time.perf_counter()
        if step > task["step"] or now - task["last"] > 30:
            task["step"], task["last"] = step, now
            self._line(f"{task['description']}: {task['completed']:,.0f}/{tot:,.0f} "
                       f"({100 * task['completed'] / tot:.0f}%, {now - task['start']:.0f} s)")


def progress() -> Any:
    """A rich progress display on a terminal, :class:`LineProgress` lines otherwise."""
    if console.is_terminal:
        return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=False)
    return LineProgress(console)


@contextmanager
def stage(description: str) -> Iterator[None]:
    """One unsized stage shown by :func:`progress` (start line, done line with its time)."""
    with progress() as p:
        t = p.add_task(description, total=None)
        yield
        p.update(t, total=1, completed=1)


# ------------------------------------------------------------------ flag parsing
def parse_list(value: str | list[str], what: str) -> list[str]:
    if isinstance(value, list):
        value = ",".join(map(str, value))
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    if not items:
        raise typer.BadParameter(f"empty {what} list")
    return items


def parse_ks(value: str, flag: str = "--k") -> list[int]:
    try:
        ks = [int(v) for v in parse_list(value, "k")]
    except ValueError as e:
        raise typer.BadParameter(f"{flag} must be comma-separated integers, got {value!r}") from e
    if any(k <= 0 for k in ks):
        raise typer.BadParameter(f"{flag} values must be positive integers, got {value!r}")
    return ks


def parse_mapping(value: str | None, flag: str) -> dict[str, str] | None:
    """``role=name,role=name`` -> dict; errors name the flag."""
    if not value:
        return None
    mapping: dict[str, str] = {}
    for part in parse_list(value, flag):
        if "=" not in part:
            raise typer.BadParameter(f"{flag} entries look like role=name, got {part!r}")
        k, v = (x.strip() for x in part.split("=", 1))
        if not k or not v:
            raise typer.BadParameter(f"{flag} entries look like role=name, got {part!r}")
        if k in mapping:
            raise typer.BadParameter(f"{flag} names {k!r} twice")
        mapping[k] = v
    return mapping


def _json_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_params(values: list[str] | None, flag: str = "--param") -> dict[str, dict[str, Any]]:
    """``--param ease.reg=500`` -> ``{"ease": {"reg": 500}}`` (values parsed as JSON if they can)."""
    params: dict[str, dict[str, Any]] = {}
    for v in values or []:
        if "=" not in v or "." not in v.split("=", 1)[0]:
            raise typer.BadParameter(f"{flag} looks like MODEL.NAME=VALUE, got {v!r}")
        key, raw = v.split("=", 1)
        model, pname = key.split(".", 1)
        params.setdefault(model.strip(), {})[pname.strip()] = _json_value(raw)
    return params


def parse_kv(values: list[str] | None, flag: str) -> dict[str, Any]:
    """``name=value`` pairs, values parsed as JSON where they can be."""
    out_: dict[str, Any] = {}
    for v in values or []:
        if "=" not in v:
            raise typer.BadParameter(f"{flag} looks like NAME=VALUE, got {v!r}")
        k, raw = v.split("=", 1)
        out_[k.strip()] = _json_value(raw)
    return out_


def check_models_params(names: list[str], params: dict[str, dict[str, Any]],
                        flag: str = "--param") -> None:
    """Every ``--param`` names a model being run, and every value is valid for it."""
    from explorec.models.params import validate_params
    from explorec.models.registry import model_class

    unknown = sorted(set(params) - set(names))
    if unknown:
        raise typer.BadParameter(f"{flag} names model(s) {unknown} that this command does not "
                                 f"run (running: {', '.join(names)})")
    for name in names:
        validate_params(name, model_class(name), params.get(name, {}))


def check_output(path: Path | None, flag: str) -> None:
    """An output path that can be written: not a directory, its parent creatable."""
    if path is None:
        return
    if path.is_dir():
        raise typer.BadParameter(f"{flag} {path} is a directory; give a file name")


# ------------------------------------------------------------------ data options
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (RecBole's default 2020).")]
DatasetOpt = Annotated[str, typer.Option(
    "--dataset", "-d", help="Registered name (see `explorec data list`) or a path: "
    ".csv/.tsv/.parquet, a directory of .parquet files (flat or hive-partitioned), RecBole "
    ".inter (reads its sibling .item/.user), GroupLens ml-100k.zip.")]


@dataclass
class DataInputs:
    """The data options of a command, as given (strings), and how to load them."""

    dataset: str = "ml-100k"
    columns: str | None = None
    duplicates: str = "error"
    min_rating: float | None = None
    k_core: int | None = None
    max_id_length: int | None = None
    items: Path | None = None
    item_columns: str | None = None
    template: str | None = None
    users: Path | None = None
    user_columns: str | None = None
    dataset_option: list[str] | None = None

    def load(self, **options: Any) -> Any:
        """The :class:`~explorec.data.Dataset`, with a progress line."""
        from explorec.data import load_dataset

        options = {**parse_kv(self.dataset_option, "--dataset-option"), **options}

        with stage(f"load {self.dataset}"):
            return load_dataset(
                self.dataset, columns=parse_mapping(self.columns, "--columns"),
                duplicates=self.duplicates, min_rating=self.min_rating, k_core=self.k_core,
                max_id_length=self.max_id_length,
                items=str(self.items) if self.items is not None else None,
                item_columns=parse_mapping(self.item_columns, "--item-columns"),
                template=self.template,
                users=str(self.users) if self.users is not None else None,
                user_columns=parse_mapping(self.user_columns, "--user-columns"), **options)


def _check_duplicates(value: str) -> str:
    from explorec.data.interactions import DUPLICATE_RULES

    if value not in DUPLICATE_RULES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(DUPLICATE_RULES)}")
    return value


def _data_parameters(users_help: str) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY

    def p(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, kw, default=default, annotation=annotation)

    return [
        p("dataset", DatasetOpt, "ml-100k"),
        p("columns", Annotated[str | None, typer.Option(
            "--columns", help="Your file's column names: user=NAME,item=NAME[,rating=NAME]"
            "[,timestamp=NAME]", rich_help_panel="Data")], None),
        p("duplicates", Annotated[str, typer.Option(
            "--duplicates", help="Repeated (user, item) pairs: error | first | last | sum | keep.",
            callback=_check_duplicates, rich_help_panel="Data")], "error"),
        p("min_rating", Annotated[float | None, typer.Option(
            "--min-rating", help="Keep only interactions rated at least this.",
            rich_help_panel="Data")], None),
        p("k_core", Annotated[int | None, typer.Option(
            "--k-core", min=1, help="Keep users and items with at least N interactions "
            "(iteratively).", rich_help_panel="Data")], None),
        p("max_id_length", Annotated[int | None, typer.Option(
            "--max-id-length", min=1, help="Longest user/item id accepted (default 256 "
            "characters).", rich_help_panel="Data")], None),
        p("dataset_option", Annotated[list[str] | None, typer.Option(
            "--dataset-option", help="Option NAME=VALUE of a registered generator, e.g. "
            "--dataset synthetic --dataset-option n_users=100000 (`explorec data list`).",
            rich_help_panel="Data")], None),
        p("items", Annotated[Path | None, typer.Option(
            "--items", help="Item file (CSV/TSV/Parquet/RecBole .item): ids plus text and "
            "features.", rich_help_panel="Item text")], None),
        p("item_columns", Annotated[str | None, typer.Option(
            "--item-columns", help="Item file columns: item=ID_COLUMN[,FIELD=COLUMN...] (fields "
            "listed: only those are kept, renamed).", rich_help_panel="Item text")], None),
        p("template", Annotated[str | None, typer.Option(
            "--template", help="Item text from the item fields, e.g. '{name}. {description}' "
            "(default: every field).", rich_help_panel="Item text")], None),
        p("users", Annotated[Path | None, typer.Option(
            "--users", help=users_help, rich_help_panel="Data")], None),
        p("user_columns", Annotated[str | None, typer.Option(
            "--user-columns", help="User file columns: user=ID_COLUMN[,FIELD=COLUMN...].",
            rich_help_panel="Data")], None),
        p("memory_limit", Annotated[str | None, typer.Option(
            "--memory-limit", help="Most memory a model may plan to use, e.g. 8GB or 512MiB "
            "(default: what the machine has available; env EXPLOREC_MEMORY_LIMIT).",
            rich_help_panel="Resources")], None),
        p("config", Annotated[Path | None, typer.Option(
            "--config", help="YAML file with any of this command's options (flags given on "
            "the command line override it).", is_eager=True, callback=_config_callback,
            expose_value=True)], None),
    ]


DATA_FIELDS = ("dataset", "columns", "duplicates", "min_rating", "k_core", "max_id_length",
               "items", "item_columns", "template", "users", "user_columns", "dataset_option")


def data_command(users_help: str = "User file (CSV/TSV/Parquet/RecBole .user): ids plus user "
                 "features.") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the data options and ``--config``; it receives the data options as
    ``data`` (a :class:`DataInputs`); ``--config`` has done its work (option defaults) by the
    time the command runs."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in ("data", "config")]
        extra = _data_parameters(users_help)
        own_names = {p.name for p in own}
        extra = [p for p in extra if p.name not in own_names]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            data = DataInputs(**{f: kwargs[f] if f in own_names else kwargs.pop(f)
                                 for f in DATA_FIELDS if f in kwargs})
            kwargs.pop("config", None)
            limit = kwargs.pop("memory_limit", None) if "memory_limit" not in own_names else None
            if limit is None:
                return fn(data=data, **kwargs)
            with memory_limit_set(limit):
                return fn(data=data, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
        del wrapper.__wrapped__  # typer must read the wrapper's signature, not fn's
        return wrapper

    return deco


@contextmanager
def memory_limit_set(value: str) -> Iterator[None]:
    """``--memory-limit``: checked now, then the limit every fit in the command plans under."""
    from explorec.errors import ExploRecError
    from explorec.memory import ENV_LIMIT, parse_size

    try:
        parse_size(value, "--memory-limit")
    except ExploRecError as e:
        raise typer.BadParameter(str(e), param_hint="--memory-limit") from None
    keys = (ENV_LIMIT, ENV_LIMIT + "_FROM")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({ENV_LIMIT: value, ENV_LIMIT + "_FROM": "--memory-limit"})
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# ------------------------------------------------------------------ --config FILE
_PATH_KEYS = {"dataset", "items", "users", "output", "json_path", "markdown_path", "plot_path",
              "artifact", "save_model", "html"}


def _config_callback(ctx: typer.Context, param: Any, value: Path | None) -> Path | None:
    if value is None:
        return None
    root = ctx.find_root().command
    ctx.default_map = {**(ctx.default_map or {}),
                       **config_defaults(value, ctx.command, _all_commands(root))}
    return value


def _all_commands(group: Any, prefix: str = "") -> dict[str, Any]:
    out_: dict[str, Any] = {}
    for name, cmd in getattr(group, "commands", {}).items():
        out_[f"{prefix}{name}"] = cmd
        out_.update(_all_commands(cmd, f"{prefix}{name} "))
    return out_


def _flags(command: Any) -> dict[str, str]:
    """Config key (option name without dashes, ``_`` for ``-``) -> parameter name."""
    by_flag: dict[str, str] = {}
    for p in getattr(command, "params", []):
        if not p.name or p.name == "config":
            continue
        by_flag[p.name] = p.name
        for opt in getattr(p, "opts", []):
            if opt.startswith("--"):
                by_flag[opt[2:].replace("-", "_")] = p.name
    return by_flag


def config_defaults(path: Path, command: Any, commands: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Read a YAML config into option defaults for ``command``.

    Keys are option names (``item-columns`` or ``item_columns``); values as on the command
    line or as YAML lists and mappings (``columns: {user: customer}``, ``models: {ease: {reg:
    500}}``, ``k: [10, 20]``; an option that takes one number uses the largest of a list). A
    section named after a command (``evaluate:``,
    ``recommend:``) holds keys for that command only. Top-level keys that only other commands
    have are ignored here, so one file can serve ``evaluate`` and ``recommend``; a key no
    command has is an error. Relative paths are relative to the config file.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise typer.BadParameter(f"file not found: {path}", param_hint="--config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"{path}: not valid YAML: {e}", param_hint="--config") from e
    if not isinstance(raw, dict):
        raise typer.BadParameter(f"{path}: expected a mapping of option names to values",
                                 param_hint="--config")
    commands = commands or {command.name: command}
    own_name = next((n for n, c in commands.items() if c is command), command.name)
    elsewhere = set().union(*(_flags(c) for c in commands.values()))
    # sections: keys named after a command that are no option's name (``models`` and
    # ``split`` are options of evaluate, so they are never sections)
    sections = {n for n in commands if n.replace("-", "_") not in elsewhere}
    merged = {k: v for k, v in raw.items() if k not in sections}
    section = raw.get(own_name) if own_name in sections else None
    section = section or {}
    if not isinstance(section, dict):
        raise typer.BadParameter(f"{path}: section {own_name!r} must be a mapping",
                                 param_hint="--config")
    merged.update(section)
    params = {p.name: p for p in command.params if p.name and p.name != "config"}
    by_flag = _flags(command)
    if isinstance(merged.get("models"), dict):  # models: {ease: {reg: 500}, pop: {}}
        models = merged.pop("models")
        merged["models"] = list(models)
        extra = [f"{m}.{k}={json.dumps(v)}" for m, ps in models.items() for k, v in (ps or {}).items()]
        merged["param"] = [*_as_list(merged.get("param")), *extra]
    if "models" in merged and "models" not in by_flag and "model" in by_flag \
            and "model" not in merged and len(_as_list(merged["models"])) == 1:
        merged["model"] = _as_list(merged["models"])[0]  # one model: fine for `recommend`
    out_: dict[str, Any] = {}
    for key, value in merged.items():
        flag = str(key).replace("-", "_")
        name = by_flag.get(flag)
        if name is None:
            if flag in elsewhere and key not in section:
                continue  # a top-level option of another command
            known = sorted({o[2:] for p in params.values() for o in getattr(p, "opts", [])
                            if o.startswith("--")})
            raise typer.BadParameter(f"{path}: unknown key {key!r} for `explorec {own_name}` "
                                     f"(known: {', '.join(known)})", param_hint="--config")
        value = _config_value(value, params[name])
        if name in _PATH_KEYS and isinstance(value, str) and value:
            from explorec.data.registry import dataset_names

            if not Path(value).is_absolute() and (name != "dataset" or value not in dataset_names()):
                value = str(path.parent / value)
        out_[name] = value
    return out_


def from_config(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` got its value from ``--config`` (not from the command line)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "DEFAULT_MAP"


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list | tuple) else [v]


def _config_value(value: Any, p: Any) -> Any:
    default = getattr(p, "default", None)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, list):
        # one number where the config lists several (k: [10, 20] for evaluate): the largest
        return str(max(int(v) for v in value))
    if getattr(p, "multiple", False):
        if isinstance(value, dict):  # param: {ease: {reg: 500}} or policy-param: {epsilon: 0.1}
            flat = []
            for k, v in value.items():
                if isinstance(v, dict):
                    flat += [f"{k}.{n}={json.dumps(x)}" for n, x in v.items()]
                else:
                    flat.append(f"{k}={json.dumps(v)}")
            return flat
        return [str(v) for v in _as_list(value)]
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool) or value is None:
        return value
    return str(value)
