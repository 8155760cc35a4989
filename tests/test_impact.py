"""Stage 2: exact vs fast agreement, gold batch (Alg. 2), normalisation, CG, edge cases."""

import json
import random

import pytest
import torch

from realign.score import run as score
from realign.score import scoring
from realign.config import ScoreConfig
from realign.data import INVERT, PUNISH, RETAIN, PreferencePair, read_pairs, write_pairs
from realign.errors import RealignError
from realign.objective import conflict_term
from realign.score.gold import allocate, build_gold_batch
from realign.score.weights import VARIANTS, normalise, weigh
from realign.score.linalg import conjugate_gradient, dot, flatten
from realign.score.scorer import Scorer
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer

from numerics import reordering_atol


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    return save_tiny(tmp_path_factory.mktemp("tiny"), tokenizer=tok, model=tiny_llama(tok, hidden=64, layers=2))


@pytest.fixture(scope="module")
def triaged(tmp_path_factory):
    from typer.testing import CliRunner

    from realign.cli import app
    from realign.resources import resource_path

    out = tmp_path_factory.mktemp("triage") / "triaged.jsonl"
    res = CliRunner().invoke(
        app, ["triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy", "contextual-exceptions",
              "--out", str(out), "--cache", str(out.with_suffix(".sqlite")), "-q"],
    )
    assert res.exit_code == 0, res.output
    return out


def run_scores(tiny_model, data, tmp_path, name, **kw):
    kw.setdefault("gold_size", 12)
    kw.setdefault("params", {"lora_r": 4})
    cfg = ScoreConfig(model=str(tiny_model), data=str(data), out=tmp_path / f"{name}.jsonl", device="cpu", **kw)
    summary = score.run(cfg, progress=False)
    rows = [json.loads(l) for l in cfg.out.read_text().splitlines()]
    scores = {r["id"]: r["meta"]["impact_score"] for r in rows if "impact" in r}
    return scores, rows, summary


def spearman(a, b):
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def agreement(exact, fast):
    keys = sorted(exact)
    a = torch.tensor([exact[k] for k in keys], dtype=torch.float64)
    b = torch.tensor([fast[k] for k in keys], dtype=torch.float64)
    return spearman(a.tolist(), b.tolist()), float((a - b).norm() / a.norm())


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "central"},
        {"method": "jvp"},
        {"method": "central", "hessian": "cg", "hvp": "gauss-newton"},
        {"method": "central", "preference_loss": "ipo"},
        {"method": "central", "params": {"kind": "modules", "last_k_blocks": 1}},
        {"method": "central", "variant": "per-category"},
        {"method": "central", "variant": "cosine"},
        {"method": "central", "variant": "cosine", "preference_loss": "ipo",
         "params": {"kind": "modules", "last_k_blocks": 1}},
    ],
    ids=["central", "jvp", "cg-gn", "ipo", "modules", "per-category", "cosine", "cosine-ipo-modules"],
)
def test_fast_path_matches_exact_per_sample_autograd(tiny_model, triaged, tmp_path, settings):
    exact, _, _ = run_scores(tiny_model, triaged, tmp_path, "exact", **{**settings, "method": "exact"})
    fast, rows, summary = run_scores(tiny_model, triaged, tmp_path, "fast", **settings)
    rho, rel = agreement(exact, fast)
    assert rho >= 0.99 and rel <= 1e-3, (rho, rel)
    assert summary["timing"]["forward_sequences_per_record"] <= 4.0  # 2 pair forwards (central) or 1 (jvp)
    assert len(exact) == 18 and all(r.get("impact") is None for r in rows if r["category"] == RETAIN)
    if settings.get("variant") == "cosine":  # one batched vmap pass: each pair forward once
        assert summary["timing"]["path"] == "per-sample gradients batched with torch.func.vmap"
        assert summary["timing"]["forward_sequences_per_record"] == 2.0 and summary["variant"]["measure"] == "cosine"
        assert all(summary["weights"][c]["n"] and "fraction_zero" in summary["weights"][c] for c in (INVERT, PUNISH))
        weights = {r["id"]: (r["category"], r["impact"]) for r in rows if r["category"] in (INVERT, PUNISH)}
        for c in (INVERT, PUNISH):  # each category's share of the total conflict weight
            want = sum(w for cat, w in weights.values() if cat == c) / sum(w for _, w in weights.values())
            assert summary["weights"][c]["share"] == pytest.approx(want)


def test_mean_and_sum_normalisation_on_files(tiny_model, triaged, tmp_path):
    _, rows, _ = run_scores(tiny_model, triaged, tmp_path, "sum", normalise="sum")
    weights = [r["impact"] for r in rows if r["category"] in (INVERT, PUNISH)]
    assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0
    _, rows, summary = run_scores(tiny_model, triaged, tmp_path, "mean", normalise="mean")
    weights = [r["impact"] for r in rows if r["category"] in (INVERT, PUNISH)]
    assert sum(weights) / len(weights) == pytest.approx(1.0)
    assert set(summary["weights"]) == {INVERT, PUNISH} and summary["histogram"][INVERT]["counts"]
    assert summary["highest"][0]["score"] >= summary["lowest"][0]["score"]
    read_pairs(tmp_path / "mean.jsonl", require_category=True)  # valid input for Stage 3


def test_cg_against_dense_solve_on_a_tiny_model(tiny_model, triaged):
    from realign.modeling.loading import attach_lora, load_causal_lm, load_tokenizer

    model = load_causal_lm(str(tiny_model), device="cpu", attn_implementation="eager")
    model.requires_grad_(False)
    model = attach_lora(model, r=1, alpha=1, targets=["v_proj"], seed=0)
    # lora_B = 0 at initialisation: perturb it so every parameter has curvature
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    scorer = Scorer(model, load_tokenizer(str(tiny_model), padding_side="right"), params, beta=0.3,
                    preference_loss="dpo", max_length=64, batch_size=8, device=torch.device("cpu"))
    records = read_pairs(triaged).pairs
    samples = [conflict_term(r) for r in records if r.category in (INVERT, PUNISH)][:6]
    g = scorer.gradient([conflict_term(r) for r in records[:6]])
    n = sum(p.numel() for p in params.values())
    shapes = [p.shape for p in params.values()]

    def unflatten(flat):
        parts, at = [], 0
        for s in shapes:
            size = int(torch.tensor(s).prod())
            parts.append(flat[at : at + size].reshape(s).float())
            at += size
        return parts

    for matvec in (scorer.hvp_exact(samples), scorer.hvp_gauss_newton(samples, "jvp", 1e-3)):
        dense = torch.stack([flatten(matvec(unflatten(torch.eye(n)[k]))) for k in range(n)], 1).double()
        assert torch.allclose(dense, dense.T, atol=1e-4 * dense.abs().max())  # symmetric
        # the exact Hessian may be indefinite: damp it enough to be positive definite
        damping = max(0.1, 0.1 - float(torch.linalg.eigvalsh((dense + dense.T) / 2).min()))
        damped = lambda u: [h + damping * ui for h, ui in zip(matvec(u), u)]
        x_dense = torch.linalg.solve(dense + damping * torch.eye(n, dtype=torch.float64), flatten(g).double())
        result = conjugate_gradient(damped, g, iters=300, tol=1e-6)
        x_cg = flatten(result.x).double()
        assert result.converged
        assert float((x_cg - x_dense).norm() / x_dense.norm()) < 1e-3


class ScaledScorer(Scorer):
    """ℓ_i of one sample multiplied by a constant: its gradient becomes factor·∇ℓ_i, on the
    exact path (the loss itself) and on the batched ones (its linearisation at θ_ref)."""

    def __init__(self, *args, target, factor, **kwargs):
        super().__init__(*args, **kwargs)
        self.target, self.factor = target, factor

    def _factors(self, samples):
        return torch.tensor([self.factor if s is self.target else 1.0 for s in samples], device=self.device)

    def losses(self, samples, *args):
        return super().losses(samples, *args) * self._factors(samples)

    def coefficients(self, samples, n1, n2):
        c1, c2 = super().coefficients(samples, n1, n2)
        return c1 * self._factors(samples), c2 * self._factors(samples)


def test_cosine_score_ignores_the_size_of_a_samples_loss_and_the_dot_score_does_not(tiny_model, triaged):
    from realign.modeling.loading import attach_lora, load_causal_lm, load_tokenizer

    model = load_causal_lm(str(tiny_model), device="cpu", attn_implementation="eager")
    model.requires_grad_(False)
    model = attach_lora(model, r=4, alpha=16, targets=["q_proj", "v_proj"], seed=0)
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for p in params.values():
        p.requires_grad_(True)
    tokenizer = load_tokenizer(str(tiny_model), padding_side="right")
    records = read_pairs(triaged).pairs
    samples = [conflict_term(r) for r in records if r.category in (INVERT, PUNISH)][:6]
    kw = dict(beta=0.3, preference_loss="dpo", max_length=64, batch_size=8, device=torch.device("cpu"),
              reference=model.disable_adapter)
    plain = Scorer(model, tokenizer, params, **kw)
    v = plain.gradient(samples)  # Σ_i ⟨v, ∇ℓ_i⟩ = 6‖v‖² > 0: some score is positive

    def paper_and_cosine(scorer, method):
        if method == "batched":
            return scorer.scores(samples, v, "jvp", 1e-3).double(), scorer.cosine_scores(samples, v, "central")
        dots = torch.tensor([scorer.exact_score(s, flatten(v)) for s in samples], dtype=torch.float64)
        return dots, scorer.cosine_scores(samples, v, "exact")

    target = int(paper_and_cosine(plain, "exact")[0].argmax())  # a positive score: the clamp keeps it
    scaled = ScaledScorer(model, tokenizer, params, target=samples[target], factor=7.0, **kw)
    others = [i for i in range(len(samples)) if i != target]
    # Rounding bounds (tests/numerics.py): a cosine is at most 1; a dot product ⟨v, ∇ℓ_i⟩ is at
    # most ‖v‖·‖∇ℓ_i‖; both are sums over the parameter coordinates. The batched dot is a
    # directional derivative by jvp, the same quantity computed another way.
    n = sum(p.numel() for p in params.values())
    v_norm = float(flatten(v).norm())
    grad_norm = torch.tensor([float(flatten(plain.gradient([s])).norm()) for s in samples], dtype=torch.float64)
    cos_atol = reordering_atol(torch.float32, 1.0, n)
    dot_atol = torch.tensor([reordering_atol(torch.float32, v_norm * float(g), n) for g in grad_norm])
    for method in ("batched", "exact"):
        dot0, cos0 = paper_and_cosine(plain, method)
        dot1, cos1 = paper_and_cosine(scaled, method)
        assert dot0[target] > 0
        assert torch.allclose(cos1.double(), cos0.double(), rtol=0, atol=cos_atol), method  # cosine: unchanged
        assert abs(float(dot1[target]) - 7.0 * float(dot0[target])) <= 7.0 * float(dot_atol[target]), method  # dot: scaled
        assert ((dot1[others] - dot0[others]).abs() <= dot_atol[others]).all(), method
    # so the paper weights move and the cosine weights do not (normalised weights are ratios of
    # scores, so their relative change is bounded by the scores' relative rounding)
    groups = {str(i): "conflict" for i in range(len(samples))}
    weights = lambda t: normalise({str(i): float(x) for i, x in enumerate(t)}, groups, "mean")[0]
    w0, w1 = weights(cos0), weights(cos1)
    kept = cos0.clamp(min=0)
    assert w1 == pytest.approx(w0, rel=0, abs=4 * cos_atol * len(samples) / float(kept.sum()))
    assert weights(dot1)[str(target)] > 1.5 * weights(dot0)[str(target)]
    assert plain.vmap_failure is None


def test_cosine_falls_back_to_per_sample_autograd_when_vmap_fails(tiny_model, triaged, tmp_path, monkeypatch, capsys):
    exact, _, _ = run_scores(tiny_model, triaged, tmp_path, "exact", variant="cosine", method="exact")

    def untraceable(self, samples):
        raise RuntimeError("vmap: data-dependent control flow is not supported\nmore detail")

    monkeypatch.setattr(Scorer, "per_sample_gradients", untraceable)
    fallback, _, summary = run_scores(tiny_model, triaged, tmp_path, "fallback", variant="cosine")
    # eager vs SDPA attention: rounding only. A cosine is at most 1 and is a sum over the
    # parameter space's coordinates, so float32 rounding bounds the difference (tests/numerics.py).
    atol = reordering_atol(torch.float32, magnitude=1.0, terms=summary["parameters"]["count"])
    assert fallback.keys() == exact.keys()
    assert fallback == pytest.approx(exact, rel=0, abs=atol)
    assert summary["timing"]["path"].startswith("per-sample autograd (vmap failed: RuntimeError: vmap: data-dependent")
    assert any("cosine scores took the per-sample path" in n for n in summary["notes"])
    assert capsys.readouterr().err.count("could not be batched with torch.func.vmap") == 1


def test_cg_on_a_known_quadratic():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = [torch.randn(12, generator=gen, dtype=torch.float64)]
    result = conjugate_gradient(lambda u: [a @ u[0]], b, iters=100, tol=1e-10)
    assert result.converged and result.iterations <= 12 + 1
    assert torch.allclose(result.x[0], torch.linalg.solve(a, b[0]), atol=1e-8)
    with pytest.raises(RealignError, match="not positive definite"):
        conjugate_gradient(lambda u: [-u[0]], b, iters=5, tol=1e-6)


# ---------------------------------------------------------------------------- gold batch (Alg. 2)


def records(n_retain, n_invert, n_punish):
    out = []
    for c, n in ((RETAIN, n_retain), (INVERT, n_invert), (PUNISH, n_punish)):
        for i in range(n):
            out.append(PreferencePair(f"{c}{i}", f"x-{c}{i}", f"good-{c}{i}", f"bad-{c}{i}", category=c))
    return out


def test_gold_batch_composition():
    gold = build_gold_batch(records(30, 30, 30), size=64, seed=3)
    assert gold.counts() == {RETAIN: 21, INVERT: 21, PUNISH: 22} and not gold.notes
    compliant = {f"good-{c}{i}" for c in (RETAIN, INVERT) for i in range(30)}
    for sample, part in zip(gold.samples, gold.parts):
        assert sample.kind == "pref"
        if part == PUNISH:  # (x, y ~ Uniform(Y_compliant), old y_w)
            assert sample.first in compliant and sample.second.startswith("good-PUNISH")
            assert sample.prompt.startswith("x-PUNISH")
        else:
            assert sample.first.startswith("good-" + part)
    again = build_gold_batch(records(30, 30, 30), size=64, seed=3)
    assert again.samples == gold.samples
    assert build_gold_batch(records(30, 30, 30), size=64, seed=4).samples != gold.samples


@pytest.mark.parametrize(
    "counts,size,expected",
    [
        ((30, 30, 0), 12, {RETAIN: 6, INVERT: 6, PUNISH: 0}),
        ((0, 30, 30), 12, {RETAIN: 0, INVERT: 6, PUNISH: 6}),
        ((2, 30, 30), 12, {RETAIN: 2, INVERT: 5, PUNISH: 5}),
        ((2, 1, 1), 12, {RETAIN: 2, INVERT: 1, PUNISH: 1}),
    ],
)
def test_gold_batch_fallbacks(counts, size, expected):
    gold = build_gold_batch(records(*counts), size=size, seed=0)
    assert gold.counts() == expected and gold.notes


def test_gold_batch_notes_say_what_fell_short_and_how_to_set_the_size():
    """Issue 27, item 20: a category that gets more than its share because another had too few
    is not warned about as if it were short; a dataset smaller than gold_size gets one line of
    advice (what is used instead, and how to set the size)."""
    gold = build_gold_batch(records(40, 40, 5), size=64, seed=0)
    assert gold.counts() == {RETAIN: 30, INVERT: 29, PUNISH: 5}
    assert gold.notes == ["gold batch: PUNISH has 5 of its 22 samples (5 available); the other categories took "
                          "the rest (RETAIN +9, INVERT +8)"]
    small = build_gold_batch(records(3, 3, 2), size=64, seed=0)
    assert small.counts() == {RETAIN: 3, INVERT: 3, PUNISH: 2} and len(small.notes) == 1
    note = small.notes[0]
    assert note.startswith("gold batch: 8 samples, not gold_size 64: the data has only 3 RETAIN, 3 INVERT, 2 PUNISH")
    assert "set gold_size to 8 or less" in note and "--gold-size" in note and "instead of" not in note
    assert not build_gold_batch(records(3, 3, 3), size=9, seed=0).notes


def test_gold_batch_needs_compliant_responses():
    with pytest.raises(RealignError, match="no usable records"):
        build_gold_batch(records(0, 0, 5), size=6, seed=0)


def test_allocate_is_exact_when_everything_is_available():
    assert allocate(64, {RETAIN: 99, INVERT: 99, PUNISH: 99}) == {RETAIN: 21, INVERT: 21, PUNISH: 22}
    assert allocate(64, {RETAIN: 99, INVERT: 99, PUNISH: 99}, "punish") == {RETAIN: 21, INVERT: 21, PUNISH: 22}


def test_a_short_category_spreads_its_share_by_default_and_gives_it_to_punish_as_alg_2():
    available = {RETAIN: 5, INVERT: 100, PUNISH: 100}
    assert allocate(64, available) == {RETAIN: 5, INVERT: 29, PUNISH: 30}
    assert allocate(64, available, "punish") == {RETAIN: 5, INVERT: 21, PUNISH: 38}  # B_P = B - |D_gold|
    assert allocate(64, {RETAIN: 100, INVERT: 100, PUNISH: 4}, "punish") == {RETAIN: 21, INVERT: 21, PUNISH: 4}
    gold = build_gold_batch(records(5, 100, 100), size=64, seed=0, remainder="punish")
    assert gold.counts() == {RETAIN: 5, INVERT: 21, PUNISH: 38} and gold.notes


def test_the_paper_variant_builds_its_gold_batch_as_alg_2(tiny_model, tmp_path):
    data = tmp_path / "short-retain.jsonl"
    write_pairs(data, records(1, 6, 6))
    _, _, summary = run_scores(tiny_model, data, tmp_path, "paper", variant="paper")
    assert summary["gold"]["counts"] == {RETAIN: 1, INVERT: 4, PUNISH: 6}  # B = 12: PUNISH takes 12 - 1 - 4 (all 6)
    _, _, summary = run_scores(tiny_model, data, tmp_path, "cosine", variant="cosine")
    assert summary["gold"]["counts"] == {RETAIN: 1, INVERT: 6, PUNISH: 5}  # the default spreads RETAIN's share


# ---------------------------------------------------------------------------- clamp and normalise


def test_normalise_sum_mean_and_clamp():
    scores = {"a": 2.0, "b": -1.0, "c": 6.0, "d": 0.0}
    groups = dict.fromkeys(scores, "conflict")
    w, notes = normalise(scores, groups, "sum")
    assert w == pytest.approx({"a": 0.25, "b": 0.0, "c": 0.75, "d": 0.0}) and not notes
    w, _ = normalise(scores, groups, "mean")
    assert w == pytest.approx({"a": 1.0, "b": 0.0, "c": 3.0, "d": 0.0})


def test_normalise_all_nonpositive_falls_back_to_uniform_with_a_note():
    w, notes = normalise({"a": -1.0, "b": 0.0}, {"a": "g", "b": "g"}, "mean")
    assert w == {"a": 1.0, "b": 1.0} and "all 2 scores are <= 0" in notes[0]


def test_all_nonpositive_scores_give_zero_weights_under_the_paper_variant_as_the_reference_code():
    from types import SimpleNamespace

    w, notes = normalise({"a": -1.0, "b": 0.0}, {"a": "g", "b": "g"}, "sum", nonpositive="zero")
    assert w == {"a": 0.0, "b": 0.0} and "weights are 0" in notes[0] and "will not train" in notes[0]
    conflict = records(0, 1, 1)[:2]
    scores = {r.id: -1.0 for r in conflict}
    for variant, expected in (("paper", 0.0), ("cosine", 1.0)):
        weights, notes = weigh(SimpleNamespace(normalise="mean"), VARIANTS[variant], conflict, conflict, scores)
        assert set(weights.values()) == {expected} and notes and all(r.impact == expected for r in conflict)


def test_normalise_within_categories():
    scores = {"i1": 1.0, "i2": 3.0, "p1": 100.0}
    groups = {"i1": INVERT, "i2": INVERT, "p1": PUNISH}
    w, _ = normalise(scores, groups, "mean")
    assert w == pytest.approx({"i1": 0.5, "i2": 1.5, "p1": 1.0})
    w, _ = normalise(scores, groups, "sum")
    assert sum(w.values()) == pytest.approx(1.0) and w["p1"] == pytest.approx(1 / 3)


def test_no_conflict_records_are_written_unweighted(tiny_model, tmp_path):
    data = tmp_path / "retain.jsonl"
    write_pairs(data, records(4, 0, 0))
    _, rows, summary = run_scores(tiny_model, data, tmp_path, "none")
    assert len(rows) == 4 and all("impact" not in r for r in rows)
    assert summary["notes"] == ["no conflict records: nothing to score"]


def test_untriaged_input_is_refused(tiny_model, tmp_path):
    data = tmp_path / "untriaged.jsonl"  # not raw.jsonl: that is the output run_scores writes
    data.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    with pytest.raises(RealignError, match="run `realign triage` first"):
        run_scores(tiny_model, data, tmp_path, "raw")


def interrupted_on_third_batch(monkeypatch, tiny_model, data, tmp_path, name) -> None:
    """Score with batches of 4 and stop with Ctrl-C at the third batch; scoring is restored."""
    original = scoring.score_batch  # every variant's batch scoring goes through it
    calls = {"n": 0}

    def dies_on_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(scoring, "score_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run_scores(tiny_model, data, tmp_path, name, batch_size=4)
    monkeypatch.setattr(scoring, "score_batch", original)


def test_interrupted_scoring_resumes_with_identical_scores(tiny_model, triaged, tmp_path, monkeypatch):
    full, _, _ = run_scores(tiny_model, triaged, tmp_path, "full", batch_size=4)
    interrupted_on_third_batch(monkeypatch, tiny_model, triaged, tmp_path, "resumed")
    assert not (tmp_path / "resumed.jsonl").exists()
    resumed, _, summary = run_scores(tiny_model, triaged, tmp_path, "resumed", batch_size=4)
    assert summary["timing"]["resumed"] == 8 and summary["timing"]["scored_now"] == 10
    assert resumed == pytest.approx(full, rel=1e-6)
    assert not list(tmp_path.glob(".resumed.jsonl*.partial"))


def test_partial_scores_are_not_resumed_across_changed_data(tiny_model, triaged, tmp_path, monkeypatch, capsys):
    """Killed mid-way, then the data rewritten at the same path (the conflicts' chosen and
    rejected swapped, same ids): the rerun says why it does not resume and scores everything
    from the new content."""
    data = tmp_path / "data.jsonl"
    data.write_bytes(triaged.read_bytes())
    interrupted_on_third_batch(monkeypatch, tiny_model, data, tmp_path, "out")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for r in rows:
        if r["category"] in (INVERT, PUNISH):
            r["chosen"], r["rejected"] = r["rejected"], r["chosen"]
            r["swapped"] = False if r["category"] == INVERT else r.get("swapped", False)
            r["verdicts"] = {"chosen": r["verdicts"]["rejected"], "rejected": r["verdicts"]["chosen"]}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    rerun, _, summary = run_scores(tiny_model, data, tmp_path, "out", batch_size=4)
    assert "not resuming from .out.jsonl.partial (changed: input data); scoring from scratch" in capsys.readouterr().err
    assert summary["timing"]["resumed"] == 0 and summary["produced_by"]["inputs"]["data"].startswith("sha256:")
    fresh, _, _ = run_scores(tiny_model, data, tmp_path, "fresh", batch_size=4)
    assert rerun == fresh


def test_gold_batch_pairs_punish_prompts_with_their_own_y_c():
    recs = records(10, 10, 10)
    for r in recs[20:25]:
        r.corrective = {"response": f"y_c-{r.id}", "source": "samples"}
    gold = build_gold_batch(recs, size=30, seed=0, punish="own-y_c")
    punish = [s for s, part in zip(gold.samples, gold.parts) if part == PUNISH]
    own = {s.first for s in punish if s.first.startswith("y_c-")}
    assert own == {f"y_c-{r.id}" for r in recs[20:25]}
    for s in punish:  # a y_c always answers its own prompt
        assert not s.first.startswith("y_c-") or s.first == "y_c-" + s.prompt.removeprefix("x-")
    paper = build_gold_batch(recs, size=30, seed=0)  # Alg. 2 as published: the default
    assert not any(s.first.startswith("y_c-") for s in paper.samples)
    assert paper.samples == build_gold_batch(records(10, 10, 10), size=30, seed=0).samples
