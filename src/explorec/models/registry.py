"""Model registry: name -> (module:class, default parameters). One line per model.

Classes are imported lazily, so listing models never imports torch.
"""

from __future__ import annotations

from typing import Any

from explorec.models.params import validate_params
from explorec.registry import Registry, import_object

# name -> ("module:class", tuned default parameters, description)
MODELS: Registry[tuple[str, dict[str, Any], str]] = Registry("model", {
    "random": ("explorec.models.baselines:RandomRecommender", {}, "seeded uniform scores"),
    "pop": ("explorec.models.baselines:PopularityRecommender", {}, "most popular items"),
    # itemknn defaults: chosen on validation NDCG@10 by benchmarks/knn_grid.py (seed 2020)
    "itemknn": ("explorec.models.knn:ItemKNN",
                {"k": 50, "shrink": 0.0, "alpha": 0.7, "user_weighting": "iuf"},
                "item-based kNN, asymmetric cosine with shrinkage"),
    "userknn": ("explorec.models.knn:UserKNN", {"k": 100, "shrink": 0.0},
                "user-based kNN, cosine with shrinkage"),
    "ease": ("explorec.models.ease:EASE", {"reg": 250.0}, "closed-form linear autoencoder"),
    "content": ("explorec.models.content:ContentRecommender", {},
                "LM-embedding interest profiles (single or multi-interest)"),
    "two-tower": ("explorec.models.two_tower:TwoTowerRecommender", {},
                  "LM item tower + attention user tower, in-batch softmax with logQ"),
    "hybrid": ("explorec.models.hybrid:HybridRecommender", {},
               "CF scores (ease by default) blended with LM content, weight chosen on validation"),
    # model zoo (issue 6): defaults tuned on validation NDCG@10, seed 2020 (docs/models.md)
    # ials: a hand grid, then explorec tune --model ials --trials 30: no trial beat these
    "ials": ("explorec.models.ials:IALS",
             {"factors": 128, "alpha": 5.0, "reg": 2.0, "reg_exponent": 0.5, "iterations": 15},
             "implicit-feedback ALS, vectorised CG solves"),
    # explorec tune --model rp3beta --trials 40 (benchmarks/results/tuning/rp3beta.json)
    "rp3beta": ("explorec.models.rp3beta:RP3beta",
                {"alpha": 0.7355, "beta": 0.5541, "k": 221, "normalize": True},
                "item-user-item random walk, popularity penalty"),
    # slim, bpr: explorec tune --trials 20 found nothing better than the class defaults
    "slim": ("explorec.models.slim:SLIM", {}, "SLIM elastic net, all items at once by ADMM"),
    "bpr": ("explorec.models.bpr:BPR", {}, "BPR matrix factorisation, sampled negatives"),
    # explorec tune --model multvae --trials 20 --timeout 900 (benchmarks/results/tuning/)
    "multvae": ("explorec.models.multvae:MultVAE",
                {"hidden": 600, "latent": 32, "dropout": 0.5, "anneal_cap": 0.84, "lr": 5.2e-4,
                 "batch_size": 64},
                "variational autoencoder, multinomial likelihood"),
    # lightgcn, neumf, cfgan, gru4rec, sasrec: class defaults chosen from a few validation runs
    "lightgcn": ("explorec.models.lightgcn:LightGCN", {}, "linear graph convolution, BPR loss"),
    "neumf": ("explorec.models.neumf:NeuMF", {}, "GMF + MLP, pointwise loss with sampled negatives"),
    "cfgan": ("explorec.models.cfgan:CFGAN", {}, "GAN: generator of purchase vectors vs discriminator"),
    "gan-augment": ("explorec.models.gan_augment:GanAugmented", {},
                    "a model (ease by default) fitted on CFGAN-augmented data for sparse users"),
    "gru4rec": ("explorec.models.gru4rec:GRU4Rec", {}, "next-item GRU over the user's sequence"),
    "sasrec": ("explorec.models.sasrec:SASRec", {}, "next-item causal self-attention (Transformer)"),
})


def model_names() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type:
    return import_object(MODELS.get(name)[0])


def history_scoring_models() -> list[str]:
    """Registered models that score a new user's history without retraining (their
    ``scores_history``); the wrappers (hybrid, gan-augment) when their inner models do."""
    return [n for n in MODELS.names() if getattr(model_class(n), "scores_history", False)]


def default_params(name: str) -> dict[str, Any]:
    return dict(MODELS.get(name)[1])


def describe(name: str) -> str:
    return MODELS.get(name)[2]


def create_model(name: str, **params: Any) -> Any:
    """Instantiate a registered model with its defaults, overridden by ``params``.

    Every parameter is checked first (type and range, :func:`validate_params`): a bad value
    raises ValueError naming ``model.parameter``.
    """
    klass = model_class(name)
    merged = validate_params(name, klass, {**default_params(name), **params})
    return klass(**merged)


def all_defaults(name: str) -> dict[str, Any]:
    """Every parameter of the model with the value it gets when not set: the class default,
    overridden by the registry's tuned default."""
    import inspect

    sig = inspect.signature(model_class(name).__init__)
    out = {p.name: p.default for p in sig.parameters.values()
           if p.name != "self" and p.default is not inspect.Parameter.empty}
    return {**out, **default_params(name)}


def describe_params(name: str) -> list[dict[str, Any]]:
    """Each parameter of the model: name, default (see :func:`all_defaults`) and its one-line
    meaning from the class docstring (:func:`explorec.models.params.parameter_docs`)."""
    from explorec.models.params import parameter_docs

    docs = parameter_docs(model_class(name))
    return [{"name": p, "default": v, "doc": docs.get(p, "")} for p, v in all_defaults(name).items()]
