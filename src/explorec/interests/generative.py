"""A generative language model that predicts the next novel interest, fine-tuned the way Wang
et al. (2024) did and distilled into a transition table for serving.

Prompts are made of the user's recent interests, each named by its description (the first
``n_words`` distinctive words of :class:`~explorec.interests.taxonomy.InterestTaxonomy`)::

    Interests a user explored, oldest first:
    - space, alien, planet
    - war, army, soldier
    Next new interest:

and the target is the description of the interest they went on to discover. The model is
SmolLM2-135M-Instruct (:mod:`explorec.encoders.smollm`, fetched and verified), fine-tuned with
LoRA (``peft``; rank ``lora_rank`` on the attention query and value projections, AdamW,
``steps`` steps of ``batch_size`` prompts drawn seeded from the training transitions, each
prompt keeping a random 1..``window`` of its most recent interests so that one-interest
prompts are in its training distribution), the loss on the target tokens only
(``objective="sft"``, Wang et al.'s). ``objective="constrained"`` instead maximises the
target's probability among the taxonomy's descriptions (the softmax of the constrained scores
below): a sequence-level loss that matches how the model is read, but it runs every
description through the model for each prompt (about a minute per prompt on 2 CPU cores,
fine on a GPU).

Decoding is constrained to the taxonomy exactly: instead of sampling text, every interest's
description (plus the line break that ends it) is scored by its log-probability after the
prompt, the prompt's key/value cache shared by all candidates. Distillation then asks the
model once per interest ``a`` (the prompt holding ``a`` alone) and keeps the softmax over the
other interests as row ``a`` of a (K, K) table, the serving form of
:class:`~explorec.interests.novelty.CooccurrenceTable`: at serving time (and in this
predictor's :meth:`GenerativeLM.scores`) no language model runs, the recent interests' rows are
summed with recency weights. The table is also the novel-interest prior that
:class:`~explorec.explore.interest.InterestTSPolicy` reads (``set_interests(prior=...)``).

Training and distillation run on CUDA when present; on 2 CPU cores a benchmark-sized run
(60 steps of 8 prompts, ~60-100 interests distilled) takes several minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from explorec.errors import ExploRecError
from explorec.interests.novelty import Transitions
from explorec.interests.taxonomy import DEFAULT_SEED, InterestTaxonomy

HEADER = "Interests a user explored, oldest first:\n"
#: the weights of the model's (calibrated) reading tried on a held-out tenth of the training
#: transitions (0: the popularity of new interests alone)
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
ASK = "Next new interest:"


class GenerativeLM:
    """Novel-interest predictor: LoRA-fine-tuned SmolLM2, distilled into a (K, K) table."""

    name = "generative-lm"

    def __init__(self, steps: int = 60, batch_size: int = 8, lr: float = 1e-3, lora_rank: int = 8,
                 window: int = 3, n_words: int = 3, decay: float = 0.7, smoothing: float = 1e-3,
                 calibrate: bool = True, objective: str = "sft", max_train: int | None = None,
                 model_path: Any = None, device: str | None = None,
                 progress: Callable[[str], None] | None = None, seed: int = DEFAULT_SEED) -> None:
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.lora_rank = lora_rank
        self.window = window
        self.n_words = n_words
        self.decay = decay
        self.smoothing = smoothing
        self.calibrate = calibrate
        if objective not in ("constrained", "sft"):
            raise ExploRecError(f"objective must be 'constrained' or 'sft', got {objective!r}")
        self.objective = objective
        self.max_train = max_train
        self.model_path = model_path
        self.device = device
        self.progress = progress
        self.seed = seed

    # ------------------------------------------------------------------ text
    def describe(self, taxonomy: InterestTaxonomy) -> list[str]:
        """Each interest's short description: its first ``n_words`` words, else its titles."""
        out = []
        for c in range(taxonomy.n_fine):
            words = [w for w in taxonomy.fine_keywords[c] if w][: self.n_words]
            titles = "; ".join(taxonomy.fine_titles[c][:2])
            out.append(", ".join(words) if words else titles or f"interest {c}")
        return out

    def prompt(self, recent: list[int]) -> str:
        return HEADER + "".join(f"- {self.descriptions_[c]}\n" for c in recent) + ASK

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Transitions, taxonomy: InterestTaxonomy) -> GenerativeLM:
        import torch

        from explorec.encoders.smollm import load_smollm

        say = self.progress or (lambda _s: None)
        if taxonomy.n_fine != train.n_clusters:
            raise ExploRecError(f"taxonomy has {taxonomy.n_fine} interests, the transitions "
                                f"{train.n_clusters}")
        if len(train) == 0:
            raise ExploRecError("the generative LM needs training transitions")
        self.descriptions_ = self.describe(taxonomy)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        base, self.tokenizer_ = load_smollm(self.model_path, device=self.device)
        self.device_ = next(base.parameters()).device
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=self.lora_rank, lora_alpha=2 * self.lora_rank, lora_dropout=0.0,
                         target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        self.model_ = get_peft_model(base, cfg)
        self._targets = self._target_ids()
        pool = np.arange(len(train))
        if self.max_train is not None and len(pool) > self.max_train:
            pool = np.sort(rng.choice(pool, self.max_train, replace=False))
        opt = torch.optim.AdamW([p for p in self.model_.parameters() if p.requires_grad], lr=self.lr)
        self.model_.train()
        self.losses_: list[float] = []
        for step in range(self.steps):  # (steps=0: the model as released, zero-shot)
            rows = rng.choice(pool, min(self.batch_size, len(pool)), replace=False)
            if self.objective == "sft":
                ids, labels, mask = self._batch(train, rows, rng)
                out = self.model_(input_ids=ids, attention_mask=mask, labels=labels)
                out.loss.backward()
                loss = float(out.loss.detach())
            else:  # cross-entropy of the target among the taxonomy's descriptions
                loss = 0.0
                for t in rows:
                    lp = self._constrained(self._recent(train, int(t), rng))
                    one = -(lp[int(train.target[t])] - torch.logsumexp(lp, dim=0)) / len(rows)
                    one.backward()
                    loss += float(one.detach())
            opt.step()
            opt.zero_grad()
            self.losses_.append(float(loss))
            if step % 10 == 0 or step == self.steps - 1:
                say(f"LoRA step {step + 1}/{self.steps}: loss {self.losses_[-1]:.3f}")
        self.model_.eval()
        self.novel_counts_ = np.bincount(train.target, minlength=train.n_clusters).astype(np.float64)
        say(f"distilling into a {taxonomy.n_fine} x {taxonomy.n_fine} table")
        self.table_ = self.distill(train)
        return self

    def _target_ids(self) -> list[list[int]]:
        """Each interest's answer tokens: its description and the line break that ends it."""
        tok = self.tokenizer_
        return [tok(" " + d + "\n", add_special_tokens=False)["input_ids"] for d in self.descriptions_]

    def _prompt_ids(self, recent: list[int]) -> list[int]:
        return self.tokenizer_(self.prompt(recent), add_special_tokens=False)["input_ids"]

    def _recent(self, train: Transitions, t: int, rng: np.random.Generator) -> list[int]:
        """The prompt's interests for transition ``t``: its most recent 1..``window``, the
        count drawn uniformly (so one-interest prompts, what distillation asks, are in the
        training distribution)."""
        recent = [int(c) for c in train.recent[t] if c >= 0][-self.window:]
        keep = int(rng.integers(1, len(recent) + 1)) if recent else 0
        return recent[len(recent) - keep:]

    def _batch(self, train: Transitions, rows: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        import torch

        seqs, labs = [], []
        for t in rows:
            p = self._prompt_ids(self._recent(train, int(t), rng))
            y = self._targets[int(train.target[t])]
            seqs.append(p + y)
            labs.append([-100] * len(p) + y)
        n = max(len(s) for s in seqs)
        pad = self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0
        ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        labels = torch.full((len(seqs), n), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, (s, lab) in enumerate(zip(seqs, labs, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, : len(s)] = torch.tensor(lab)
            mask[i, : len(s)] = 1
        return ids.to(self.device_), labels.to(self.device_), mask.to(self.device_)

    # ------------------------------------------------------------------ constrained decoding
    def interest_logprobs(self, recent: list[int]) -> np.ndarray:
        """(K,) log-probability of each interest's description after the prompt of
        ``recent`` interests (constrained decoding over the whole taxonomy, exactly)."""
        import torch

        with torch.no_grad():
            return self._constrained(recent).cpu().numpy().astype(np.float64)

    def _candidates(self) -> tuple[Any, Any]:
        """(token ids (K, n) of every description, right-padded; lengths (K,))."""
        import torch

        if getattr(self, "_cand", None) is None:
            lengths = torch.tensor([len(t) for t in self._targets])
            cand = torch.zeros((len(self._targets), int(lengths.max())), dtype=torch.long)
            for i, t in enumerate(self._targets):
                cand[i, : len(t)] = torch.tensor(t)
            self._cand = (cand.to(self.device_), lengths.to(self.device_))
        return self._cand

    def _constrained(self, recent: list[int]) -> Any:
        """(K,) torch log-probabilities of the descriptions after the prompt (differentiable
        when gradients are on): the prompt runs once, its key/value cache is repeated for the
        K candidates, which run in one batch."""
        import torch

        cand, lengths = self._candidates()
        k, n = cand.shape
        prompt = torch.tensor([self._prompt_ids(recent)], device=self.device_)
        out = self.model_(input_ids=prompt, use_cache=True)
        cache = _cache_of(out)
        cache.batch_repeat_interleave(k)
        mask = torch.ones((k, prompt.shape[1] + n), dtype=torch.long, device=self.device_)
        nxt = self.model_(input_ids=cand, attention_mask=mask, use_cache=False,
                          **{_cache_argument(self.model_): cache})
        logits = torch.cat([out.logits[:, -1:, :].expand(k, 1, -1), nxt.logits[:, :-1, :]], dim=1)
        tok_lp = torch.log_softmax(logits.float(), dim=-1).gather(2, cand[:, :, None])[:, :, 0]
        valid = torch.arange(n, device=self.device_)[None, :] < lengths[:, None]
        return (tok_lp * valid).sum(dim=1)

    def distill(self, train: Transitions | None = None) -> np.ndarray:
        """(K, K) table: row ``a`` is the model's distribution over the next novel interest
        given ``a`` alone, ``a`` itself excluded (see :func:`calibrated_table`). With
        ``calibrate`` and ``train``, the weight of the model's reading is the one of
        ``WEIGHTS`` with the best Hit@5 on a seeded tenth of ``train`` (whose own targets are
        then left out of the popularity counts)."""
        k = len(self._targets)
        lp = np.vstack([self.interest_logprobs([a]) for a in range(k)] + [self.interest_logprobs([])])
        self.logprobs_ = lp
        self.weight_ = 1.0
        if self.calibrate and train is not None and len(train) >= 20:
            from explorec.interests.novelty import novelty_metrics

            rng = np.random.default_rng(self.seed + 1)
            val = np.zeros(len(train), bool)
            val[rng.choice(len(train), max(len(train) // 10, 1), replace=False)] = True
            held = train.subset(val)
            counts = np.bincount(train.target[~val], minlength=k).astype(np.float64)
            self.weight_scores_ = {}
            for w in WEIGHTS:
                table = calibrated_table(lp[:k], lp[k], counts, True, self.smoothing, weight=w)
                self.weight_scores_[w] = novelty_metrics(table_scores(table, held, self.decay), held, 5,
                                                         self.seed)["hit@5"]
            # ties go to the weight nearest 1 (the model's calibrated reading as it is)
            self.weight_ = max(WEIGHTS, key=lambda w: (self.weight_scores_[w], -abs(w - 1.0)))
        return calibrated_table(lp[:k], lp[k], self.novel_counts_, self.calibrate, self.smoothing,
                                weight=self.weight_)

    # ------------------------------------------------------------------ serving form
    def scores(self, batch: Transitions) -> np.ndarray:
        """Recency-weighted sum of the distilled rows of the recent interests (no LM runs)."""
        return table_scores(self.table_, batch, self.decay)

    def lm_scores(self, batch: Transitions) -> np.ndarray:
        """(T, K) the fine-tuned model's own log-probabilities on each transition's full
        recent context (one constrained pass per transition: for measuring what distillation
        loses on a sample, not for serving)."""
        out = np.empty((len(batch), len(self._targets)))
        for t in range(len(batch)):
            recent = [int(c) for c in batch.recent[t] if c >= 0][-self.window:]
            out[t] = self.interest_logprobs(recent)
        return out

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model_.parameters() if p.requires_grad)


def table_scores(table: np.ndarray, batch: Transitions, decay: float = 0.7) -> np.ndarray:
    """(T, K) log of the recency-weighted sum of ``table``'s rows of each transition's recent
    interests: how a transition table is read at serving time."""
    w = batch.recency_weights(decay)
    rows = np.where(batch.recent >= 0, batch.recent, 0)
    return np.log(np.maximum(np.einsum("tw,twk->tk", w, table[rows]), 1e-300))


def _cache_of(out: Any) -> Any:
    """The key/value cache of a forward pass (``cache`` in transformers 5, ``past_key_values``
    before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _cache_argument(model: Any) -> str:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def calibrated_table(logprobs: np.ndarray, empty: np.ndarray, novel_counts: np.ndarray, calibrate: bool,
                     smoothing: float, weight: float = 1.0) -> np.ndarray:
    """Row-normalised (K, K) table from the LM's log-probabilities of each interest's
    description after the one-interest prompts (``logprobs[a, b]``) and after the prompt with
    no interest (``empty[b]``).

    With ``calibrate`` (the default) a row is ``P(b | a) / P(b | no context)`` times the
    share of training transitions whose new interest was ``b``: the model contributes how much
    ``a`` raises ``b`` over its own context-free reading (which cancels what the descriptions'
    lengths and wording do to their probabilities: contextual calibration, Zhao et al. 2021),
    raised to the power ``weight``, the training data contribute how often ``b`` is new to
    anyone. Without it, the raw ``P(b | a)``. ``smoothing`` of each row is spread uniformly;
    the diagonal is 0.
    """
    k = logprobs.shape[0]
    z = np.array(logprobs, dtype=np.float64)
    if calibrate:
        prior = np.log((np.asarray(novel_counts, np.float64) + 1.0) / (np.sum(novel_counts) + k))
        z = weight * (z - np.asarray(empty, np.float64)[None, :]) + prior[None, :]
    np.fill_diagonal(z, -np.inf)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p = (1 - smoothing) * p + smoothing / max(k - 1, 1)
    np.fill_diagonal(p, 0.0)
    return p / p.sum(axis=1, keepdims=True)


def lora_summary(model: GenerativeLM) -> dict[str, Any]:
    """Figures of a fitted predictor for reports: trainable parameters, losses, table entropy."""
    t = model.table_
    ent = -(t * np.log(np.where(t > 0, t, 1.0))).sum(axis=1).mean()
    return {"trainable_parameters": model.n_parameters, "steps": model.steps,
            "lm_weight": model.weight_, "lm_weight_validation_hit@5": getattr(model, "weight_scores_", {}),
            "first_loss": model.losses_[0] if model.losses_ else math.nan,
            "last_loss": model.losses_[-1] if model.losses_ else math.nan,
            "table_mean_entropy": float(ent), "uniform_entropy": float(np.log(max(t.shape[0] - 1, 1)))}
