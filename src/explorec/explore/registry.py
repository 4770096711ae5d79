"""Policy registry: name -> (module:class, description). Classes are imported lazily."""

from __future__ import annotations

from typing import Any

from explorec.registry import Registry, import_object

# name -> ("module:class", description)
POLICIES: Registry[tuple[str, str]] = Registry("policy", {
    "greedy": ("explorec.explore.greedy:GreedyPolicy", "base model's top-k (pure exploitation)"),
    "egreedy": ("explorec.explore.greedy:EpsilonGreedyPolicy",
                "greedy, uniformly random slate in epsilon of requests"),
    "softmax": ("explorec.explore.greedy:SoftmaxPolicy",
                "greedy, Plackett-Luce slate on base scores in budget of requests"),
    "ucb": ("explorec.explore.bandits:UCB1Policy", "UCB1 per item"),
    "ts": ("explorec.explore.bandits:BernoulliTSPolicy", "Bernoulli Thompson sampling with Beta priors"),
    "linucb": ("explorec.explore.linear:LinUCBPolicy", "LinUCB on LM item vectors and user features"),
    "lints": ("explorec.explore.linear:LinTSPolicy",
              "linear Thompson sampling on LM item vectors and user features"),
    "neural-linear": ("explorec.explore.linear:NeuralLinearPolicy",
                      "Thompson sampling, Bayesian linear head on two-tower embeddings"),
    "vw": ("explorec.explore.vw:VowpalWabbitPolicy", "Vowpal Wabbit --cb_explore_adf (optional)"),
    "mmr": ("explorec.explore.mmr:MMRPolicy", "MMR diversity re-ranking of the base model"),
    "interest-ts": ("explorec.explore.interest:InterestTSPolicy",
                    "exploit slots + explore slots that Thompson-sample a novel interest cluster"),
})


def policy_names() -> list[str]:
    return POLICIES.names()


def policy_class(name: str) -> type:
    return import_object(POLICIES.get(name)[0])


def describe_policy(name: str) -> str:
    return POLICIES.get(name)[1]


def create_policy(name: str, **params: Any) -> Any:
    """Instantiate a registered policy; ``params`` override its defaults."""
    klass = policy_class(name)
    try:
        return klass(**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for policy {name!r}: {e}") from e


def needs_item_vectors(name: str) -> bool:
    """Whether the policy (with its default parameters) explores over item text vectors."""
    klass = policy_class(name)
    return bool(klass.needs_item_text and not klass.uses_two_tower)


def needs_two_tower(name: str) -> bool:
    """Whether the policy (with its default parameters) reads a two-tower model's embeddings."""
    return bool(policy_class(name).uses_two_tower)
