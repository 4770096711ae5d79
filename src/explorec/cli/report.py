"""``explorec report``: one self-contained HTML file from the JSON that runs write, and the
``--html FILE`` option the run commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Also write a self-contained HTML report (charts inline, readable offline; "
    "docs/reports.md).")]


def write_html_option(report: dict[str, Any], path: Path | None, *, source: str) -> None:
    """Write ``--html``'s file for a command's report object (nothing without a path)."""
    if path is None:
        return
    from explorec.cli.common import console, fail
    from explorec.errors import ExploRecError
    from explorec.report.html import write_html

    try:
        write_html(report, path, source=source)
    except (ExploRecError, ImportError, OSError) as e:
        fail(e)
    console.print(f"wrote {path}")


def report_command(
    runs: Annotated[list[Path], typer.Argument(
        help="JSON files written by evaluate, simulate, ope, tune or the benchmarks.",
        show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")
                      ] = Path("report.html"),
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
) -> None:
    """Build one self-contained HTML report (leaderboards with confidence intervals and
    significance, metric bars, simulation curves, OPE estimates with intervals, tuning
    trials) from run JSON files; the charts and their script are inlined, so the file reads
    offline."""
    from explorec.cli.common import check_output, fail, out
    from explorec.errors import ExploRecError
    from explorec.report.html import load_run, write_report

    try:
        check_output(output, "--output")
        loaded = [load_run(p) for p in runs]
        path = write_report(loaded, output, title=title)
    except (ExploRecError, ImportError, OSError, typer.BadParameter) as e:
        fail(e)
    kinds = ", ".join(f"{r.source} ({r.kind})" for r in loaded)
    out.print(f"wrote {path} from {kinds}", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``explorec`` command line."""
    app.command("report")(report_command)
