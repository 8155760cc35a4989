"""Loss primitives (realign.objective.losses): padding-aware sequence log-probs and the DPO / NPO /
IPO forms with their derivatives."""

import math

import pytest
import torch
import torch.nn.functional as F

from realign.objective.losses import DPO, IPO, NPO, PREFERENCE_LOSSES, dpo_loss, nll_loss, sequence_logps


def _manual(logits, labels, mask):
    out, counts = [], []
    for b in range(labels.shape[0]):
        total, n = 0.0, 0
        for t in range(1, labels.shape[1]):
            if mask[b, t]:
                total += float(torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]])
                n += 1
        out.append(total)
        counts.append(n)
    return torch.tensor(out, dtype=torch.float64), torch.tensor(counts)


def test_sequence_logps_matches_a_per_token_loop_with_padding_on_either_side():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0],   # right padding after the response
                         [0, 0, 0, 0, 1, 1, 1],   # left padding before the prompt
                         [0, 1, 1, 1, 1, 1, 1]])
    labels[0, 5:] = -100  # padding labels may be out of range where masked
    logps, n = sequence_logps(logits, labels, mask)
    ref, ref_n = _manual(logits, labels.clamp(min=0), mask)
    assert torch.allclose(logps.double(), ref, atol=1e-5)
    assert n.tolist() == ref_n.float().tolist() == [3.0, 3.0, 6.0]
    assert logps.dtype == torch.float32


def test_sequence_logps_is_differentiable_and_checks_shapes():
    logits = torch.randn(2, 5, 4, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5))
    logps, _ = sequence_logps(logits, labels, torch.ones(2, 5))
    logps.sum().backward()
    assert logits.grad is not None and logits.grad[:, -1].abs().sum() == 0  # the last position scores nothing
    with pytest.raises(ValueError):
        sequence_logps(logits, labels[:, :4], torch.ones(2, 4))


def test_sequence_logps_of_a_real_model_matches_its_own_loss():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 50, (1, 9))
    logits = model(input_ids=ids).logits
    logps, n = sequence_logps(logits, ids, torch.ones_like(ids))
    hf_loss = model(input_ids=ids, labels=ids).loss  # mean NLL over the 8 predicted tokens
    assert torch.allclose(nll_loss(logps, n), hf_loss.unsqueeze(0), atol=1e-5)


def test_dpo_loss_values():
    pc, pr = torch.tensor([-5.0, -5.0, -3.0]), torch.tensor([-5.0, -8.0, -1.0])
    rc, rr = torch.tensor([-5.0, -5.0, -5.0]), torch.tensor([-5.0, -5.0, -5.0])
    loss = dpo_loss(pc, pr, rc, rr, beta=0.3)
    assert loss.shape == (3,)
    assert math.isclose(float(loss[0]), math.log(2), rel_tol=1e-6)  # θ = ref: Δ = 0
    delta = (-5 + 5) - (-8 + 5)
    assert math.isclose(float(loss[1]), -math.log(1 / (1 + math.exp(-0.3 * delta))), rel_tol=1e-6)
    assert float(loss[2]) > math.log(2)  # rejected rose more than chosen


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc = torch.tensor([-4.0], requires_grad=True)
    pr = torch.tensor([-4.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-4.0]), torch.tensor([-4.0]), 0.3).sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending the loss raises log π(chosen)


def test_npo_loss():
    logp, ref = torch.tensor([-3.0, -10.0]), torch.tensor([-3.0, -3.0])
    loss = NPO.value(logp - ref, 0.3)
    assert math.isclose(float(loss[0]), math.log(2), rel_tol=1e-6)
    assert float(loss[1]) < 0.2  # far below the reference: saturated
    x = torch.tensor([-3.0], requires_grad=True)
    NPO.value(x - torch.tensor([-3.0]), 0.3).sum().backward()
    assert x.grad.item() > 0  # descending lowers the response's likelihood


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_scalar_forms_and_their_derivatives(name):
    form = PREFERENCE_LOSSES[name]
    s = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    for f in (form, NPO):
        value = f.value(s, 0.3)
        (g,) = torch.autograd.grad(value.sum(), s, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), s)
        assert torch.allclose(g, f.grad(s, 0.3))
        assert torch.allclose(h, f.curvature(s, 0.3))
    margin = torch.tensor([0.7])
    assert torch.allclose(DPO.value(margin, 0.3), dpo_loss(margin, torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.3))
    assert torch.allclose(NPO.value(margin, 0.3), -F.logsigmoid(-0.3 * margin))
    assert torch.allclose(IPO.value(torch.tensor([1 / 0.6]), 0.3), torch.zeros(1))


def test_nll_loss_handles_empty_rows():
    assert nll_loss(torch.tensor([-6.0, 0.0]), torch.tensor([3.0, 0.0])).tolist() == [2.0, 0.0]
    assert F.logsigmoid(torch.tensor(0.0)).item() == pytest.approx(-math.log(2))
