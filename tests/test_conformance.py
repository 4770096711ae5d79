"""Every registered model and policy against the one contract (tests/conformance.py).

One class per registry name, with the small settings that keep its fit to about a second on
the shared synthetic data. The meta-tests at the bottom fail when a registered name has no
class here, so a new model or policy is tested from the day it is registered.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from conformance import ModelTests, PolicyTests, conformance_classes

NEURAL = {"progress": False}
TT = {"encoder": "tfidf", "epochs": 2, "batch_size": 256, "progress": False, "dim": 32,
      "hidden": 64}
CFGAN = {"epochs": 2, "g_hidden": [32], "d_hidden": [16], "progress": False}


# ====================================================================== models
class TestRandom(ModelTests):
    name = "random"
    history_free = True


class TestPop(ModelTests):
    name = "pop"
    history_free = True
    history_is_score = True

    def make_constant(self, model: Any) -> Any:
        """Pop ranks from its counts (its own global-list path), not from ``_score``."""
        import copy

        m = copy.copy(model)
        m.item_counts_ = np.ones_like(m.item_counts_)
        return m


class TestItemKNN(ModelTests):
    name = "itemknn"
    additive = True
    history_is_score = True


class TestUserKNN(ModelTests):
    name = "userknn"


class TestEASE(ModelTests):
    name = "ease"
    params: ClassVar[dict[str, Any]] = {"reg": 50.0}
    additive = True
    history_is_score = True


class TestContent(ModelTests):
    name = "content"
    params: ClassVar[dict[str, Any]] = {"encoder": "tfidf"}


class TestTwoTower(ModelTests):
    name = "two-tower"
    params = TT
    history_is_score = True


class TestHybrid(ModelTests):
    name = "hybrid"
    params: ClassVar[dict[str, Any]] = {"cf": "ease", "cf_params": {"reg": 50.0}, "text": "content",
              "text_params": {"encoder": "tfidf"}}


class TestIALS(ModelTests):
    name = "ials"
    params: ClassVar[dict[str, Any]] = {"factors": 16, "iterations": 3}


class TestRP3beta(ModelTests):
    name = "rp3beta"
    additive = True
    history_is_score = True


class TestSLIM(ModelTests):
    name = "slim"
    additive = True
    history_is_score = True


class TestBPR(ModelTests):
    name = "bpr"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, **NEURAL}


class TestMultVAE(ModelTests):
    name = "multvae"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, "hidden": 32, "latent": 8, **NEURAL}
    history_is_score = True


class TestLightGCN(ModelTests):
    name = "lightgcn"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, "factors": 16, **NEURAL}


class TestNeuMF(ModelTests):
    name = "neumf"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, "factors": 8, "layers": [16, 8], **NEURAL}


class TestCFGAN(ModelTests):
    name = "cfgan"
    params = CFGAN
    history_is_score = True


class TestGanAugment(ModelTests):
    name = "gan-augment"
    params: ClassVar[dict[str, Any]] = {"base_params": {"reg": 50.0}, "cfgan_params": CFGAN}


class TestGRU4Rec(ModelTests):
    name = "gru4rec"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, "dim": 16, "hidden": 16, "max_len": 10, **NEURAL}


class TestSASRec(ModelTests):
    name = "sasrec"
    params: ClassVar[dict[str, Any]] = {"epochs": 2, "dim": 16, "heads": 2, "layers": 1,
                                        "max_len": 10, **NEURAL}


# ====================================================================== policies
class TestGreedy(PolicyTests):
    name = "greedy"


class TestEpsilonGreedy(PolicyTests):
    name = "egreedy"
    params: ClassVar[dict[str, Any]] = {"epsilon": 0.2}


class TestSoftmax(PolicyTests):
    name = "softmax"


class TestUCB(PolicyTests):
    name = "ucb"


class TestTS(PolicyTests):
    name = "ts"


class TestLinUCB(PolicyTests):
    name = "linucb"
    params: ClassVar[dict[str, Any]] = {"n_context": 2}


class TestLinTS(PolicyTests):
    name = "lints"
    params: ClassVar[dict[str, Any]] = {"n_context": 2}


class TestNeuralLinear(PolicyTests):
    name = "neural-linear"
    base = ("two-tower", TT)


class TestVW(PolicyTests):
    name = "vw"


class TestMMR(PolicyTests):
    name = "mmr"


class TestInterestTS(PolicyTests):
    name = "interest-ts"
    params: ClassVar[dict[str, Any]] = {"n_context": 2, "budget": 0.4, "n_clusters": 4}


class TestInterestTSGreedy(PolicyTests):
    """A second configuration of the same policy (greedy exploit slots, explore slots at
    random positions, a budget that adapts), not a second policy."""

    name = "interest-ts"
    variant = "greedy"
    params: ClassVar[dict[str, Any]] = {"exploit": "greedy", "explore_slots": "random", "boredom": 0.2,
                                        "n_clusters": 4}


# ====================================================================== meta
def _names(base: type) -> list[str]:
    """The policy or model each conformance class tests (a configuration ``variant`` of one
    already tested does not count again)."""
    return [c.name for c in conformance_classes(base, globals()) if not getattr(c, "variant", "")]


def test_every_registered_model_has_a_conformance_class():
    from explorec.models.registry import create_model, model_names

    names = _names(ModelTests)
    assert len(names) == len(set(names)), "two conformance classes test the same model"
    missing = sorted(set(model_names()) - set(names))
    assert not missing, f"registered models without a conformance class: {missing}"
    assert sorted(names) == sorted(model_names()), "a conformance class names no registered model"
    for klass in conformance_classes(ModelTests, globals()):  # their settings are valid
        create_model(klass.name, **klass.params)


def test_every_registered_policy_has_a_conformance_class():
    from explorec.explore.registry import create_policy, policy_names

    names = _names(PolicyTests)
    assert len(names) == len(set(names)), "two conformance classes test the same policy"
    missing = sorted(set(policy_names()) - set(names))
    assert not missing, f"registered policies without a conformance class: {missing}"
    assert sorted(names) == sorted(policy_names()), "a conformance class names no registered policy"
    for klass in conformance_classes(PolicyTests, globals()):
        create_policy(klass.name, **klass.params)
