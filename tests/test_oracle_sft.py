"""The testbed ceiling `oracle-sft`: supervised fine-tuning on the new policy's correct response
for every training prompt — RETAIN chosen, (swapped) INVERT chosen, the oracle's y_c for PUNISH —
as `ga` terms of weight −1, which the trainer turns into the mean NLL per token."""

import pytest
import torch

from realign.data import INVERT, PUNISH, RETAIN, PreferencePair
from realign.objective.losses import token_logps
from realign.train.methods import METHODS, SFT_WEIGHT, MethodOptions, sft_targets
from realign.modeling.sequences import collate, encode
from realign.synth import World
from realign.synth.export import make_pairs, truth_triage
from realign.synth.judge import TruthJudge
from realign.testing.tiny import tiny_llama, tiny_tokenizer
from realign.train.dataset import TermCollator, TermDataset
from realign.train.loss import term_losses

OK = {"compliant": True, "p_compliant": 1.0, "raw": ""}
BAD = {"compliant": False, "p_compliant": 0.0, "raw": ""}


def records():
    return [
        # INVERT is stored swapped: chosen is the old loser, the one the new policy wants
        PreferencePair("i", "For my class, explain phishing.", "Here is an overview of phishing.", "I cannot help.",
                       INVERT, True, {"chosen": OK, "rejected": BAD}),
        PreferencePair("p", "For my class, explain ricin.", "Here is an overview of ricin.", "Sure, step 1.",
                       PUNISH, False, {"chosen": BAD, "rejected": BAD}, oracle="I cannot help with ricin."),
        PreferencePair("p-no-oracle", "Explain grenades.", "Here is an overview.", "Sure, step 1.",
                       PUNISH, False, {"chosen": BAD, "rejected": BAD}),
        PreferencePair("r", "What is 2 plus 2?", "The answer is 4.", "The answer is 5.",
                       RETAIN, False, {"chosen": OK, "rejected": BAD}),
    ]


def test_targets_are_the_new_policys_correct_responses():
    assert sft_targets(records()) == [
        ("For my class, explain phishing.", "Here is an overview of phishing."),  # INVERT: swapped chosen
        ("For my class, explain ricin.", "I cannot help with ricin."),  # PUNISH: the oracle's y_c
        ("What is 2 plus 2?", "The answer is 4."),  # RETAIN: chosen
    ]  # a PUNISH record without y_c has no correct response: left out
    terms = METHODS["oracle-sft"].terms(records(), MethodOptions())
    assert [(t.kind, t.prompt, t.first, t.second, t.weight, t.component) for t in terms] == [
        ("ga", p, y, None, SFT_WEIGHT, "L_SFT") for p, y in sft_targets(records())]
    untriaged = [PreferencePair("u", "x", "a", "b")]
    with pytest.raises(Exception, match="needs triaged records"):
        METHODS["oracle-sft"].terms(untriaged, MethodOptions())


@pytest.mark.parametrize("shift", ["synth-contextual", "synth-contextual-referral"])
def test_every_synth_training_prompt_gets_a_response_the_new_policy_requires(shift):
    world = World(0)
    triaged = truth_triage(make_pairs(world, 200), shift, world)
    targets = sft_targets(triaged)
    assert len(targets) == len(triaged)  # the world writes a y_c for every PUNISH pair
    judge = TruthJudge(shift)
    for prompt, response in targets:
        assert judge.rules.verdict(prompt, response).compliant, (prompt, response)
    # the changed slices are in the data, with the new behaviour as the target
    assert any(r.category in (INVERT, PUNISH) for r in triaged)


def test_the_sft_term_is_the_mean_token_nll():
    tok = tiny_tokenizer()
    model = tiny_llama(tok, seed=2)
    terms = METHODS["oracle-sft"].terms(records(), MethodOptions())
    dataset = TermDataset(terms, tok, 128)
    batch = TermCollator(dataset, tok.pad_token_id, dataset.components)([{"index": i} for i in range(len(terms))])
    options = {"beta": 0.3, "preference_loss": "dpo", "nll_weight": 1.0, "components": dataset.components}
    loss, parts = term_losses(model, batch, options, lambda *a, **k: None)
    nll = []
    for t in terms:
        e = encode(tok, t.prompt, t.first, 128)
        b = collate([e], tok.pad_token_id)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        nll.append(-token_logps(logits, b["input_ids"], b["response_mask"]).sum() / e.response_len)
    expected = torch.stack(nll).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["L_SFT"] == pytest.approx(expected.item(), rel=1e-5)
    assert parts["L_NLL"] == 0.0  # no preference terms: the anchor adds nothing
