"""Stage 3: loss primitives by hand, batched terms vs one-at-a-time, TRL cross-checks,
methods, resume, guard rails, LoRA and full training."""

import copy
import json
import math

import pytest
import torch

from realign.train import run as train
from realign.config import TrainConfig
from realign.data import INVERT, PUNISH, RETAIN, PreferencePair, read_pairs, write_pairs
from realign.errors import RealignError
from realign.objective.losses import DPO, IPO, KIND_INDEX, NPO, dpo_loss, keep_loss, rdpo_loss, token_logps
from realign.train.methods import METHODS, MethodOptions, get_method
from realign.modeling.sequences import collate, encode
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer
from realign.train import trainer as realign_trainer
from realign.train.dataset import TermCollator, TermDataset
from realign.train.loss import accepts_logits_to_keep, logits_to_keep, term_losses
from realign.train.merge import merge


def test_losses_by_hand():
    pc, pr, rc, rr = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5])
    margin = torch.tensor([1.5])  # (-3 + 4) - (-5 + 4.5)
    expected_dpo = -math.log(1 / (1 + math.exp(-0.45)))
    assert dpo_loss(pc, pr, rc, rr, 0.3).item() == pytest.approx(expected_dpo)
    assert DPO.value(margin, 0.3).item() == pytest.approx(expected_dpo)
    assert IPO.value(margin, 0.3).item() == pytest.approx((1.5 - 1 / 0.6) ** 2)
    assert NPO.value(torch.tensor([2.0]), 0.5).item() == pytest.approx(-math.log(1 / (1 + math.exp(1.0))))
    # derivatives against autograd
    for loss in (DPO, IPO, NPO):
        s = torch.tensor([0.7], requires_grad=True)
        (g,) = torch.autograd.grad(loss.value(s, 0.3).sum(), s, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), s)
        assert g.item() == pytest.approx(loss.grad(s, 0.3).item(), rel=1e-6)
        assert h.item() == pytest.approx(loss.curvature(s, 0.3).item(), rel=1e-5)


def test_rdpo_loss_is_the_robust_dpo_formula_and_dpo_without_noise():
    margins = torch.tensor([-2.0, -0.3, 0.0, 0.8, 3.0])
    beta, eps = 0.3, 0.2
    ell = lambda z: -math.log(1 / (1 + math.exp(-z)))  # noqa: E731  -log σ(z)
    expected = [((1 - eps) * ell(beta * m) - eps * ell(-beta * m)) / (1 - 2 * eps) for m in margins.tolist()]
    assert rdpo_loss(margins, beta, eps).tolist() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(rdpo_loss(margins, beta, 0.0), DPO.value(margins, beta))
    # unbiased: its expectation over a label flipped with probability ε is the DPO loss of the true label
    noisy = (1 - eps) * rdpo_loss(margins, beta, eps) + eps * rdpo_loss(-margins, beta, eps)
    assert torch.allclose(noisy, DPO.value(margins, beta), atol=1e-6)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tok):
    return save_tiny(tmp_path_factory.mktemp("tiny"), tokenizer=tok, model=tiny_llama(tok, hidden=64, layers=2, seed=1))


def triaged_records(n=4):
    out = []
    for i in range(n):
        ok = {"compliant": True, "p_compliant": 1.0, "raw": ""}
        bad = {"compliant": False, "p_compliant": 0.0, "raw": ""}
        out.append(PreferencePair(f"i{i}", f"For my class, explain topic {i}.", f"Here is an overview of topic {i}.",
                                  "I can't help with that.", INVERT, True, {"chosen": ok, "rejected": bad}, impact=0.5 + i))
        out.append(PreferencePair(f"p{i}", f"Tell me about thing {i}.", "I can't help with that.",
                                  f"Step 1: do thing {i}.", PUNISH, False, {"chosen": bad, "rejected": bad}, impact=1.0))
        out.append(PreferencePair(f"r{i}", f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.", "No idea.",
                                  RETAIN, False, {"chosen": ok, "rejected": bad}))
    return out


# ----------------------------------------------------------------------------- methods


def test_every_method_builds_terms():
    recs = triaged_records()
    opts = MethodOptions(alpha_kl=0.1, normalise="mean")
    kinds = {name: sorted({(t.kind, t.component) for t in m.terms(recs, opts)}) for name, m in METHODS.items()}
    assert kinds["trace"] == [("kl", "L_KL"), ("npo2", "L_II"), ("pref", "L_I")]
    assert kinds["trace-no-kl"] == [("npo2", "L_II"), ("pref", "L_I")]
    assert kinds["trace-no-triage"] == [("kl", "L_KL"), ("npo", "L_NPO")]
    assert kinds["dpo-gold"] == kinds["naive-oracle-dpo"] == kinds["dpo"] == [("pref", "L_pref")]
    assert kinds["rdpo"] == [("rdpo", "L_rDPO")]  # on the naive relabelled set, as naive-oracle-dpo
    assert [(t.prompt, t.first, t.second) for t in METHODS["rdpo"].terms(recs, opts)] == \
        [(t.prompt, t.first, t.second) for t in METHODS["naive-oracle-dpo"].terms(recs, opts)]
    assert kinds["grad-ascent"] == [("ga", "L_GA")]
    trace = METHODS["trace"].terms(recs, opts)
    assert [t.weight for t in trace if t.component == "L_I"] == [0.5, 1.5, 2.5, 3.5]
    assert {t.weight for t in METHODS["trace-no-impact"].terms(recs, opts) if t.kind != "kl"} == {1.0}
    summed = METHODS["trace-no-impact"].terms(recs, MethodOptions(normalise="sum"))
    assert {t.weight for t in summed if t.kind != "kl"} == {1 / 8}
    assert len(METHODS["dpo-gold"].terms(recs, opts)) == 8  # PUNISH excluded without an oracle
    naive = {t.prompt: t for t in METHODS["naive-oracle-dpo"].terms(recs, opts)}
    assert naive["Tell me about thing 0."].first == "Step 1: do thing 0."  # the false dichotomy
    assert len(METHODS["npo"].terms(recs, opts)) == 4 + 8 + 4  # every violating response


def test_retain_preference_term_contrasts_retain_pairs_with_a_violating_loser():
    recs = triaged_records(2)
    both_ok = {"compliant": True, "p_compliant": 1.0, "raw": ""}
    recs.append(PreferencePair("r-both", "Say hi.", "Hi!", "Hello!", RETAIN, False,
                               {"chosen": both_ok, "rejected": both_ok}))
    for name in ("trace", "trace-no-impact", "trace-no-kl"):
        plain = METHODS[name].terms(recs, MethodOptions())
        extended = METHODS[name].terms(recs, MethodOptions(retain_pref=0.5))
        added = [t for t in extended if t.component == "L_R"]
        assert [t for t in extended if t.component != "L_R"] == plain
        # one per RETAIN pair whose loser violates π_new; none for the both-compliant pair
        assert [(t.kind, t.first, t.second, t.weight) for t in added] == [
            ("pref", r.chosen, r.rejected, 0.5) for r in recs if r.category == RETAIN and r.id != "r-both"]


def test_keep_term_is_one_sided_on_the_retain_pairs_l_r_would_push():
    """L_K sits on the pairs L_R uses, and is zero — with no gradient — while the pair's margin
    over π_ref is ≥ 0; below it, it is the DPO loss less log 2 (a restoring force, never a push)."""
    recs = triaged_records(2)
    pushed = [t for t in METHODS["trace"].terms(recs, MethodOptions(retain_pref=1.0)) if t.component == "L_R"]
    kept = [t for t in METHODS["trace"].terms(recs, MethodOptions(retain_keep=0.5)) if t.component == "L_K"]
    assert [(t.kind, t.first, t.second, t.weight) for t in kept] == [
        ("keep", t.first, t.second, 0.5) for t in pushed] and kept
    margin = torch.tensor([-4.0, -0.5, 0.0, 0.5, 4.0], requires_grad=True)
    loss = keep_loss(margin, 0.3)
    (grad,) = torch.autograd.grad(loss.sum(), margin)
    expected_below = -torch.nn.functional.logsigmoid(0.3 * margin[:2].detach()) - math.log(2)
    assert torch.allclose(loss[:2].detach(), expected_below) and bool((loss[:2] > 0).all())
    assert loss[2:].abs().max().item() == 0.0 and grad[3:].abs().max().item() == 0.0
    assert bool((grad[:2] < 0).all())  # raising the margin lowers the loss


def test_trace_requires_impact_and_unknown_method_is_clear():
    recs = triaged_records()
    recs[0].impact = None
    with pytest.raises(RealignError, match="needs impact weights"):
        METHODS["trace"].terms(recs, MethodOptions())
    with pytest.raises(RealignError, match="unknown method 'dpo2'"):
        get_method("dpo2")


# ----------------------------------------------------------------------------- batched loss vs simple path


def simple_term_loss(model, ref_model, tok, term, beta, loss_name, epsilon=0.0):
    def lp(m, response):
        e = encode(tok, term.prompt, response, 128)
        b = collate([e], tok.pad_token_id)
        logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        return token_logps(logits, b["input_ids"], b["response_mask"]).sum(), e.response_len, logits, b

    p1, n1, logits1, b1 = lp(model, term.first)
    with torch.no_grad():
        r1, _, ref_logits1, _ = lp(ref_model, term.first)
    if term.kind == "kl":
        lp_t = torch.log_softmax(logits1[0, :-1], -1)
        lr_t = torch.log_softmax(ref_logits1[0, :-1], -1)
        mask = b1["response_mask"][0, 1:].float()
        return ((lr_t.exp() * (lr_t - lp_t)).sum(-1) * mask).sum() / mask.sum()
    if term.kind == "npo":
        return NPO.value(p1 - r1, beta)
    p2, n2, _, _ = lp(model, term.second)
    with torch.no_grad():
        r2, _, _, _ = lp(ref_model, term.second)
    if term.kind == "npo2":
        return NPO.value(p1 - r1, beta) + NPO.value(p2 - r2, beta)
    if term.kind == "keep":  # the DPO loss of the margin clipped at 0, less its value at 0
        margin = (p1 - r1) / n1 - (p2 - r2) / n2 if loss_name == "ipo" else (p1 - r1) - (p2 - r2)
        return dpo_loss(margin.clamp(max=0), torch.zeros(()), torch.zeros(()), torch.zeros(()), beta) - math.log(2)
    if term.kind == "rdpo":
        return rdpo_loss((p1 - r1) - (p2 - r2), beta, epsilon)
    if loss_name == "ipo":
        return IPO.value((p1 - r1) / n1 - (p2 - r2) / n2, beta)
    return dpo_loss(p1, p2, r1, r2, beta)


@pytest.mark.parametrize("loss_name", ["dpo", "ipo"])
def test_batched_term_losses_match_one_at_a_time(tok, loss_name):
    ref_model = tiny_llama(tok, seed=3)
    model = copy.deepcopy(ref_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # policy != reference
    terms = METHODS["trace"].terms(triaged_records(2), MethodOptions(alpha_kl=0.1, retain_keep=0.7))
    assert any(t.kind == "keep" for t in terms)
    terms += METHODS["trace-no-triage"].terms(triaged_records(1), MethodOptions(alpha_kl=0.1))
    terms += METHODS["rdpo"].terms(triaged_records(1), MethodOptions())
    dataset = TermDataset(terms, tok, 128)
    batch = TermCollator(dataset, tok.pad_token_id, dataset.components)([{"index": i} for i in range(len(terms))])
    options = {"beta": 0.3, "preference_loss": loss_name, "nll_weight": 0.0, "components": dataset.components,
               "rdpo_epsilon": 0.2}

    def reference_logits(m, ids, mask, **kw):
        with torch.no_grad():
            return ref_model(input_ids=ids, attention_mask=mask, **kw).logits

    loss, parts = term_losses(model, batch, options, reference_logits)
    expected = sum(t.weight * simple_term_loss(model, ref_model, tok, t, 0.3, loss_name, 0.2) for t in terms) / len(terms)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert sum(parts.values()) == pytest.approx(loss.item(), rel=1e-5)
    # gradients scale with the weights
    g1 = torch.autograd.grad(loss, [p for p in model.parameters()][-1])[0]
    dataset2 = TermDataset([t.__class__(**{**t.__dict__, "weight": 2 * t.weight}) for t in terms], tok, 128)
    batch2 = TermCollator(dataset2, tok.pad_token_id, dataset2.components)([{"index": i} for i in range(len(terms))])
    loss2, _ = term_losses(model, batch2, options, reference_logits)
    g2 = torch.autograd.grad(loss2, [p for p in model.parameters()][-1])[0]
    assert torch.allclose(g2, 2 * g1, rtol=1e-4, atol=1e-8)


def test_trimmed_logits_give_the_full_logits_loss_and_gradients(tok):
    """The policy and reference passes compute logits only from the position before the
    earliest response token of the micro-batch; losses and gradients are those of full logits."""
    ref_model = tiny_llama(tok, seed=6)
    model = copy.deepcopy(ref_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    recs = triaged_records(2)
    recs[0].prompt = "For my class, explain topic 0 in great detail, with history, examples and caveats, please."
    terms = METHODS["trace"].terms(recs, MethodOptions(alpha_kl=0.1))
    terms += METHODS["trace-no-triage"].terms(triaged_records(1), MethodOptions(alpha_kl=0.1))
    dataset = TermDataset(terms, tok, 128)
    batch = TermCollator(dataset, tok.pad_token_id, dataset.components)([{"index": i} for i in range(len(terms))])
    prompt_lens = {int(r.nonzero()[0]) for r in batch["response_mask"]}
    keep = logits_to_keep(batch["response_mask"])
    assert len(prompt_lens) > 2 and keep == batch["input_ids"].shape[1] - min(prompt_lens) + 1
    assert 0 < keep < batch["input_ids"].shape[1] and accepts_logits_to_keep(model)
    seen = []

    def reference_logits(m, ids, mask, **kw):
        with torch.no_grad():
            out = ref_model(input_ids=ids, attention_mask=mask, **kw).logits
        seen.append(out.shape[1])
        return out

    last = [p for p in model.parameters()][-1]
    for nll in (0.0, 1.0):
        options = {"beta": 0.3, "preference_loss": "dpo", "nll_weight": nll, "nll_retain": True,
                   "components": dataset.components}
        full, full_parts = term_losses(model, batch, {**options, "trim_logits": False}, reference_logits)
        assert seen[-1] == batch["input_ids"].shape[1]
        trimmed, parts = term_losses(model, batch, options, reference_logits)
        assert seen[-1] == keep
        assert trimmed.item() == pytest.approx(full.item(), abs=1e-6, rel=1e-6)
        assert parts == pytest.approx(full_parts, abs=1e-6, rel=1e-6)
        g_full = torch.autograd.grad(full, last)[0]
        g_trim = torch.autograd.grad(trimmed, last)[0]
        assert torch.allclose(g_trim, g_full, rtol=1e-5, atol=1e-7)
    # a reference callable without the argument gets full logits; the policy's are aligned to them
    old_style, _ = term_losses(model, batch, options, lambda m, i, a: ref_model(input_ids=i, attention_mask=a).logits)
    assert old_style.item() == pytest.approx(full.item(), abs=1e-6, rel=1e-6)
    # a batch without any response token, and a model whose forward lacks the argument: all logits
    assert logits_to_keep(torch.zeros(2, 5, dtype=torch.long)) == 0
    assert not accepts_logits_to_keep(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("nll_retain", [False, True])
def test_nll_anchor_adds_length_averaged_nll_of_the_anchored_responses(tok, nll_retain):
    model = tiny_llama(tok, seed=5)
    terms = METHODS["trace"].terms(triaged_records(2), MethodOptions(alpha_kl=0.1))
    terms += METHODS["rdpo"].terms(triaged_records(1), MethodOptions())
    assert {t.kind for t in terms} >= {"pref", "kl", "rdpo"}
    dataset = TermDataset(terms, tok, 128)
    batch = TermCollator(dataset, tok.pad_token_id, dataset.components)([{"index": i} for i in range(len(terms))])

    def reference_logits(m, ids, mask, **kw):
        with torch.no_grad():
            return m(input_ids=ids, attention_mask=mask, **kw).logits

    base = {"beta": 0.3, "preference_loss": "dpo", "components": dataset.components, "nll_retain": nll_retain}
    plain, _ = term_losses(model, batch, {**base, "nll_weight": 0.0}, reference_logits)
    anchored, parts = term_losses(model, batch, {**base, "nll_weight": 2.0}, reference_logits)
    nll = 0.0
    for t in terms:
        if t.kind in ("pref", "rdpo") or (nll_retain and t.kind == "kl"):
            e = encode(tok, t.prompt, t.first, 128)
            b = collate([e], tok.pad_token_id)
            with torch.no_grad():
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            nll += -token_logps(logits, b["input_ids"], b["response_mask"]).sum().item() / e.response_len
    nll /= len(terms)
    assert parts["L_NLL"] == pytest.approx(nll, rel=1e-5)
    assert anchored.item() == pytest.approx(plain.item() + 2.0 * nll, rel=1e-5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "robust"])
def test_dpo_ipo_and_rdpo_equal_trl_on_the_same_batch(tok, loss_type):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    ref_model = tiny_llama(tok, seed=4)
    model = copy.deepcopy(ref_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    rows = [
        {"prompt": [{"role": "user", "content": f"question {i}?"}],
         "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
         "rejected": [{"role": "assistant", "content": f"bad {i} answer, longer"}]}
        for i in range(4)
    ]
    args = DPOConfig(output_dir="/tmp/realign-trl-check", per_device_train_batch_size=4, max_steps=1, bf16=False,
                     use_cpu=True, report_to=[], beta=0.3, loss_type=[loss_type], precompute_ref_log_probs=False,
                     label_smoothing=0.2 if loss_type == "robust" else 0.0)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    trl_loss = trainer.compute_loss(trainer.model, batch).item()
    half = batch["input_ids"].shape[0] // 2
    ours_in = {
        "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
        "response_mask": batch["completion_mask"],
        "kind": torch.full((half,), KIND_INDEX["rdpo" if loss_type == "robust" else "pref"]),
        "weight": torch.ones(half), "component": torch.zeros(half, dtype=torch.long),
        "second_row": torch.arange(half, 2 * half), "ref": torch.full((half, 2), float("nan")),
    }
    options = {"beta": 0.3, "preference_loss": "ipo" if loss_type == "ipo" else "dpo", "nll_weight": 0.0,
               "components": ["L_pref"], "rdpo_epsilon": 0.2}
    ours, _ = term_losses(model, ours_in, options, lambda m, i, a, **kw: ref_model(input_ids=i, attention_mask=a, **kw).logits)
    assert ours.item() == pytest.approx(trl_loss, abs=1e-5)
    # and our own tokenisation gives the same sequences as TRL's
    ids = [encode(tok, r["prompt"], r["chosen"], 1024).ids for r in rows]
    trl_ids = {tuple(x[m.bool()].tolist()) for x, m in zip(batch["input_ids"][:half], batch["attention_mask"][:half])}
    assert set(ids) == trl_ids


# ----------------------------------------------------------------------------- runs on files


def config(tiny_dir, data, out, **kw):
    base = dict(model=str(tiny_dir), data=str(data), out=out, device="cpu", max_steps=8, batch_size=4,
                logging_steps=1, save_steps=4, learning_rate=5e-3, warmup_ratio=0.0, lora={"r": 4, "dropout": 0.0})
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def weighted(tmp_path):
    path = tmp_path / "weighted.jsonl"
    write_pairs(path, triaged_records(4))
    return path


def losses_of(summary):
    return [h["loss"] for h in summary["log_history"] if "loss" in h]


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_training_lowers_the_loss(tiny_dir, weighted, tmp_path, finetune):
    summary = train.run(config(tiny_dir, weighted, tmp_path / "run", method="dpo", finetune=finetune, max_steps=12,
                               learning_rate=1e-2 if finetune == "lora" else 1e-3), progress=False)
    losses = losses_of(summary)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.05, losses
    saved = tmp_path / "run" / ("adapter" if finetune == "lora" else "model")
    assert any(saved.glob("*.safetensors")) and (tmp_path / "run" / "train_config.yaml").exists()
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["steps"] == 12


def test_rdpo_trains_on_the_naive_set_with_its_configured_epsilon(tiny_dir, weighted, tmp_path, monkeypatch):
    seen, real = [], term_losses

    def spy(model, inputs, options, reference_logits):
        seen.append(options["rdpo_epsilon"])
        return real(model, inputs, options, reference_logits)

    monkeypatch.setattr(realign_trainer, "term_losses", spy)
    summary = train.run(config(tiny_dir, weighted, tmp_path / "run", method="rdpo", rdpo_epsilon=0.25, max_steps=2),
                        progress=False)
    assert summary["terms"] == {"L_rDPO": 12} and set(seen) == {0.25}  # one term per pair, as naive-oracle-dpo
    with pytest.raises(ValueError, match="rdpo_epsilon"):
        config(tiny_dir, weighted, tmp_path / "bad", method="rdpo", rdpo_epsilon=0.5)  # 1 − 2ε must stay positive


def test_trace_logs_each_component(tiny_dir, weighted, tmp_path):
    summary = train.run(config(tiny_dir, weighted, tmp_path / "run", method="trace"), progress=False)
    logged = [h for h in summary["log_history"] if "loss" in h]
    assert {"L_I", "L_II", "L_KL", "L_R"} <= set().union(*logged)  # L_R: the default boundary term (retain_pref)
    for h in logged:
        assert h["L_I"] + h["L_II"] + h["L_KL"] + h["L_R"] == pytest.approx(h["loss"], rel=1e-3, abs=1e-6)


def test_tensorboard_receives_each_component(tiny_dir, weighted, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train.run(config(tiny_dir, weighted, tmp_path / "run", method="trace", max_steps=4, report_to=["tensorboard"]),
              progress=False)
    (events,) = (tmp_path / "run" / "checkpoints" / "runs").glob("*/events.out.tfevents.*")
    logged = EventAccumulator(str(events)).Reload()
    for tag in ("train/loss", "train/L_I", "train/L_II", "train/L_KL", "train/learning_rate"):
        assert [e.step for e in logged.Scalars(tag)] == [1, 2, 3, 4], tag


def interrupted_after_six_losses(monkeypatch, cfg) -> None:
    """Run ``cfg`` and stop it with Ctrl-C at its sixth loss computation (after the step-4
    checkpoint); the trainer is restored afterwards."""
    original = realign_trainer.RealignTrainer.compute_loss
    calls = {"n": 0}

    def dies_after_six(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(realign_trainer.RealignTrainer, "compute_loss", dies_after_six)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, progress=False)
    monkeypatch.setattr(realign_trainer.RealignTrainer, "compute_loss", original)


def test_resume_gives_the_same_final_weights(tiny_dir, weighted, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    straight = train.run(config(tiny_dir, weighted, tmp_path / "a", method="trace"), progress=False)
    interrupted_after_six_losses(monkeypatch, config(tiny_dir, weighted, tmp_path / "b", method="trace"))
    resumed = train.run(config(tiny_dir, weighted, tmp_path / "b", method="trace"), progress=False)
    assert resumed["resumed"] and resumed["steps"] == straight["steps"] == 8
    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_gradient_checkpointing_gives_the_same_weights(tiny_dir, weighted, tmp_path, monkeypatch, finetune):
    """Recomputing activations in the backward pass changes memory, not the result."""
    from safetensors.torch import load_file
    from transformers.models.llama.modeling_llama import LlamaMLP

    # counted inside the decoder block (the block's own forward is what transformers checkpoints)
    original, calls = LlamaMLP.forward, {"n": 0}

    def counted(self, *a, **k):
        calls["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(LlamaMLP, "forward", counted)
    saved = "adapter/adapter_model.safetensors" if finetune == "lora" else "model/model.safetensors"
    runs = {}
    for flag in (False, True):
        out, calls["n"] = tmp_path / f"gc{int(flag)}", 0
        summary = train.run(config(tiny_dir, weighted, out, method="trace", finetune=finetune, max_steps=4,
                                   learning_rate=1e-3, gradient_checkpointing=flag), progress=False)
        runs[flag] = (losses_of(summary), load_file(out / saved), calls["n"])
    # the checkpointed run recomputes every block of every policy forward in its backward pass
    assert runs[True][2] > runs[False][2]
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    plain, checkpointed = runs[False][1], runs[True][1]
    assert plain.keys() == checkpointed.keys()
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-5, atol=1e-6)


def test_a_different_config_does_not_resume_into_old_checkpoints(tiny_dir, weighted, tmp_path, capsys):
    from safetensors.torch import load_file

    train.run(config(tiny_dir, weighted, tmp_path / "run", method="dpo", max_steps=4), progress=False)
    again = train.run(config(tiny_dir, weighted, tmp_path / "run", method="dpo", max_steps=4, beta=0.1), progress=False)
    assert "(changed: setting beta); training from scratch" in capsys.readouterr().err
    assert not again["resumed"] and again["steps"] == 4 and again["config"]["beta"] == 0.1
    fresh = train.run(config(tiny_dir, weighted, tmp_path / "fresh", method="dpo", max_steps=4, beta=0.1), progress=False)
    a = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "fresh" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a) and fresh["steps"] == 4


@pytest.mark.parametrize("rows", [3, 6], ids=["fewer-rows", "more-rows"])
def test_data_rewritten_at_the_same_path_is_not_resumed_into(tiny_dir, tmp_path, monkeypatch, capsys, rows):
    """The run key hashes the data's content, not its path: an interrupted run whose data was
    rewritten starts over (no stale reference log-probs, no IndexError), and trains on the new rows."""
    data = tmp_path / "data.jsonl"
    write_pairs(data, triaged_records(4))
    interrupted_after_six_losses(monkeypatch, config(tiny_dir, data, tmp_path / "run", method="trace-no-impact"))
    assert (tmp_path / "run" / "reference_logps.pt").exists()
    write_pairs(data, triaged_records(rows))
    capsys.readouterr()
    summary = train.run(config(tiny_dir, data, tmp_path / "run", method="trace-no-impact"), progress=False)
    assert "(changed: input data); training from scratch" in capsys.readouterr().err
    assert not summary["resumed"] and summary["records"] == len(read_pairs(data).pairs)
    assert summary["produced_by"]["inputs"]["data"].startswith("sha256:")


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tiny_dir, weighted, tmp_path, monkeypatch):
    original = term_losses
    calls = {"n": 0}

    def nan_at_step_six(*a, **k):
        calls["n"] += 1
        loss, parts = original(*a, **k)
        return (loss * float("nan") if calls["n"] == 6 else loss), parts

    monkeypatch.setattr(realign_trainer, "term_losses", nan_at_step_six)
    with pytest.raises(realign_trainer.TrainingDiverged, match="loss is nan at step 6") as info:
        train.run(config(tiny_dir, weighted, tmp_path / "run", method="dpo"), progress=False)
    # the weights are named beside the advice (issue 27, item 19: a huge impact got learning-rate advice only)
    assert "largest term weight in the micro-batch 1);" in str(info.value) and "`impact`" in str(info.value)
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint-4"
    assert (ckpt / "adapter_model.safetensors").exists()


def test_empty_category_is_handled(tiny_dir, tmp_path):
    path = tmp_path / "no_punish.jsonl"
    write_pairs(path, [r for r in triaged_records(3) if r.category != PUNISH])
    summary = train.run(config(tiny_dir, path, tmp_path / "run", method="trace", max_steps=2), progress=False)
    assert set(summary["terms"]) == {"L_I", "L_KL", "L_R"}  # L_R on the RETAIN pairs whose loser violates
    path2 = tmp_path / "retain_only.jsonl"
    write_pairs(path2, [r for r in triaged_records(2) if r.category == RETAIN])
    with pytest.raises(RealignError, match="finds nothing to train on"):
        train.run(config(tiny_dir, path2, tmp_path / "run2", method="trace-no-kl", retain_pref=0.0), progress=False)


def test_merge_folds_the_adapter(tiny_dir, weighted, tmp_path):
    from realign.modeling.loading import load_causal_lm
    from peft import PeftModel

    train.run(config(tiny_dir, weighted, tmp_path / "run", method="dpo", max_steps=3), progress=False)
    merged_dir = merge(str(tiny_dir), str(tmp_path / "run" / "adapter"), tmp_path / "merged")
    merged = load_causal_lm(str(merged_dir), device="cpu")
    adapted = PeftModel.from_pretrained(load_causal_lm(str(tiny_dir), device="cpu"), str(tmp_path / "run" / "adapter"))
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5)


def test_an_adapter_of_another_base_model_says_which_shapes_differ(tiny_dir, tok, tmp_path, capsys):
    """Issue 27, item 19: the error names the first tensor whose shape differs and both shapes
    (it was cut after `PeftModel:`), and a warning says the adapter names another base model."""
    from realign.modeling.loading import attach_lora, load_adapter, load_causal_lm

    attach_lora(load_causal_lm(str(tiny_dir), device="cpu"), 4, 8, ["q_proj", "v_proj"], 0).save_pretrained(
        str(tmp_path / "adapter"))
    load_adapter(load_causal_lm(str(tiny_dir), device="cpu"), tmp_path / "adapter")
    assert "warning" not in capsys.readouterr().err  # its own base model: no warning
    other = save_tiny(tmp_path / "narrow", tokenizer=tok, model=tiny_llama(tok, hidden=32, heads=4, layers=2, seed=1))
    with pytest.raises(RealignError) as info:
        load_adapter(load_causal_lm(str(other), device="cpu"), tmp_path / "adapter")
    message = str(info.value)
    assert f"does not fit model {str(other)!r}: model.layers.0.self_attn.q_proj.lora_A.default.weight is [4, 64] in " \
           "the adapter but [4, 32] in the model (and 7 more tensors differ)" in message, message
    assert f"(it names {str(tiny_dir)!r} in its adapter_config.json)" in message and "\n" not in message
    err = capsys.readouterr().err
    assert f"warning: adapter '{tmp_path / 'adapter'}' was trained on {str(tiny_dir)!r}" in err
    assert f"not on {str(other)!r}" in err
