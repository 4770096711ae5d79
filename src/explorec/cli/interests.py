"""``explorec interests build|show|evaluate``: the catalog's interest taxonomy and the
prediction of users' next novel interests (docs/interests.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from explorec.cli.common import DataInputs, console, data_command, fail, out, parse_list

interests_app = typer.Typer(help="Interest clusters of the catalog and novel-interest prediction.",
                            no_args_is_help=True)

EncoderOpt = Annotated[str, typer.Option("--encoder", help="Item text encoder: minilm | tfidf | PATH.")]
FineOpt = Annotated[int | None, typer.Option("--fine", min=2, help="Fine interests (default: chosen by "
                                                                     "silhouette).")]
CoarseOpt = Annotated[int | None, typer.Option("--coarse", min=1, help="Coarse interests (default: "
                                                                         "chosen by silhouette).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0)]


def _say(msg: str) -> None:
    console.print(f"[dim]{msg}[/dim]")


def _taxonomy(data: DataInputs, encoder: str, fine: int | None, coarse: int | None, seed: int,
              taxonomy: Path | None) -> tuple[Any, Any]:
    from explorec.interests import InterestTaxonomy, taxonomy_from_dataset

    dataset = data.load()
    if taxonomy is not None:
        tax = InterestTaxonomy.load(taxonomy)
        ids = list(dataset.interactions.items.ids)
        if list(tax.item_ids) != ids:
            raise typer.BadParameter(f"the taxonomy in {taxonomy} was built for another catalog "
                                     f"({len(tax.item_ids):,} items, the dataset has {len(ids):,})",
                                     param_hint="--taxonomy")
        return dataset, tax
    return dataset, taxonomy_from_dataset(dataset, encoder=encoder, n_fine=fine, n_coarse=coarse,
                                          seed=seed, progress=_say)


def _item_vectors(dataset: Any, encoder: str) -> Any:
    """The items' text vectors (from the embedding cache after the taxonomy's build)."""
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items

    return encode_items(dataset.interactions.items, dataset.catalog, get_encoder(encoder))


def _show(tax: Any, top: int) -> None:
    d = tax.to_dict(top)
    table = Table(title=f"{d['n_fine']} fine interests in {d['n_coarse']} coarse ones "
                        f"({d['n_items']:,} items, encoder {d['encoder']}, seed {d['seed']})")
    for col in ("fine", "coarse", "items", "distinctive words", "central titles"):
        table.add_column(col, justify="right" if col in ("fine", "coarse", "items") else "left")
    for c in d["clusters"]:
        table.add_row(str(c["fine"]), str(c["coarse"]), str(c["size"]), ", ".join(c["keywords"]),
                      "; ".join(c["titles"]))
    out.print(table)
    sel = d["selection"]
    for level in ("fine", "coarse"):
        if level in sel:
            out.print(f"{level} sizes tried ({sel['criterion']}): "
                      + ", ".join(f"{k}: {v}" for k, v in sel[level].items()))


@interests_app.command("build")
@data_command()
def build(data: DataInputs,
          output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write.")],
          encoder: EncoderOpt = "minilm", fine: FineOpt = None, coarse: CoarseOpt = None,
          seed: SeedOpt = 2020, top: Annotated[int, typer.Option("--top", min=0)] = 15) -> None:
    """Cluster the catalog's items into fine and coarse interests and save them."""
    from explorec.errors import ExploRecError

    try:
        _, tax = _taxonomy(data, encoder, fine, coarse, seed, None)
        tax.save(output)
    except (ExploRecError, ValueError) as e:
        fail(e)
    _show(tax, top)
    console.print(f"wrote {output}")


@interests_app.command("show")
def show(taxonomy: Annotated[Path, typer.Argument(help="A directory written by `interests build`.")],
         top: Annotated[int, typer.Option("--top", min=0, help="Largest clusters to list (0: all).")] = 0,
         json_path: Annotated[Path | None, typer.Option("--json", help="Write the clusters as JSON.")] = None
         ) -> None:
    """Print a saved taxonomy's clusters with their descriptions."""
    from explorec._io import atomic_write_json
    from explorec.errors import ExploRecError
    from explorec.interests import InterestTaxonomy

    try:
        tax = InterestTaxonomy.load(taxonomy)
    except (ExploRecError, OSError) as e:
        fail(e)
    _show(tax, top)
    if json_path:
        atomic_write_json(json_path, tax.to_dict())
        console.print(f"wrote {json_path}")


@interests_app.command("evaluate")
@data_command()
def evaluate(data: DataInputs,
             predictors: Annotated[str, typer.Option("--predictors", help="Comma-separated: popular-novel, "
                                                     "cooccurrence, text-bilinear, text-bilinear+table.")
                                   ] = "popular-novel,cooccurrence,text-bilinear,text-bilinear+table",
             taxonomy: Annotated[Path | None, typer.Option("--taxonomy", help="A saved taxonomy (default: "
                                                           "build one).")] = None,
             encoder: EncoderOpt = "minilm", fine: FineOpt = None, coarse: CoarseOpt = None,
             window: Annotated[int, typer.Option("--window", min=1, help="Recent interests in the context.")
                               ] = 5,
             min_history: Annotated[int, typer.Option("--min-history", min=1)] = 5,
             k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of Hit@k / NDCG@k.")] = 5,
             seed: SeedOpt = 2020,
             json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None
             ) -> None:
    """Novel-interest prediction: hold out each user's last novel transition; Hit@k, NDCG@k."""
    from explorec._io import atomic_write_json
    from explorec.errors import ExploRecError
    from explorec.interests import PREDICTORS, evaluate_predictors, novel_transitions
    from explorec.report import environment

    try:
        names = parse_list(predictors, "--predictors")
        unknown = [n for n in names if n not in PREDICTORS]
        if unknown:
            raise typer.BadParameter(f"unknown predictor {unknown[0]!r}: use {', '.join(PREDICTORS)}",
                                     param_hint="--predictors")
        dataset, tax = _taxonomy(data, encoder, fine, coarse, seed, taxonomy)
        tr = novel_transitions(dataset.interactions, tax.fine, window=window, min_history=min_history)
        vecs = _item_vectors(dataset, tax.encoder or encoder)
        rows = evaluate_predictors(tr, tax, names, k=k, seed=seed, item_vectors=vecs, progress=_say)
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    base = next((r for r in rows if r["predictor"] == "cooccurrence"), None)
    table = Table(title=f"next novel interest on {data.dataset}: {tax.n_fine} interests, "
                        f"{int((~tr.test).sum()):,} training and {int(tr.test.sum()):,} held-out "
                        f"transitions, seed {seed}")
    for col in ("predictor", f"Hit@{k}", f"NDCG@{k}", "Hit vs table"):
        table.add_column(col, justify="left" if col == "predictor" else "right")
    for r in rows:
        rel = f"{r[f'hit@{k}'] / base[f'hit@{k}']:.3f}x" if base and base[f"hit@{k}"] > 0 else "-"
        r["hit_vs_table"] = None if rel == "-" else round(r[f"hit@{k}"] / base[f"hit@{k}"], 4)
        table.add_row(r["predictor"], f"{r[f'hit@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}", rel)
    out.print(table)
    if json_path:
        atomic_write_json(json_path, {"dataset": data.dataset, "encoder": tax.encoder, "n_fine": tax.n_fine,
                                      "n_coarse": tax.n_coarse, "window": window, "min_history": min_history,
                                      "k": k, "seed": seed, "results": rows, "environment": environment()})
        console.print(f"wrote {json_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(interests_app, name="interests")
