import math

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig
from recurlab.train.grpo import (GRPOConfig, clipped_objective, completion_mask, group_advantages, grpo_loss,
                                 grpo_train, kl_k3, sample_group, token_logprobs)

# ----------------------------------------------------------------------------- advantages


def test_group_advantages_hand_case():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 6.0, 8.0]])
    adv = group_advantages(rewards, eps=0.0)
    # group 1: mean 0.5, population std 0.5 -> +-1; group 2: mean 5, std sqrt(5)
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert torch.allclose(adv[1], torch.tensor([-3.0, -1.0, 1.0, 3.0]) / math.sqrt(5.0))
    eps = 0.1
    assert torch.allclose(group_advantages(rewards[0], eps=eps), torch.tensor([0.5, -0.5, -0.5, 0.5]) / (0.5 + eps))


@pytest.mark.parametrize("rewards", [[3.0, 3.0, 3.0], [0.0, 0.0], [7.0]])
def test_group_advantages_equal_rewards_are_zero(rewards):
    adv = group_advantages(torch.tensor(rewards))
    assert torch.isfinite(adv).all()
    assert torch.equal(adv, torch.zeros(len(rewards)))


# ----------------------------------------------------------------------------- clipping


def test_clipped_objective_hand_cases_and_gradients():
    eps = 0.2
    ratios = torch.tensor([[1.5, 0.5, 1.1, 0.5, 1.5]])  # one completion per case below, one token each
    advantages = torch.tensor([1.0, -2.0, 3.0, 1.0, -1.0])
    logp_old = torch.log(torch.tensor([[0.2, 0.4, 0.5, 0.4, 0.2]])).T.contiguous()
    logp_new = (logp_old + torch.log(ratios.T)).requires_grad_(True)
    mask = torch.ones(5, 1)
    obj = clipped_objective(logp_new, logp_old, advantages, mask, eps)
    expected = torch.tensor([
        1.2 * 1.0,   # ratio 1.5 > 1 + eps, A > 0: clipped to 1.2
        0.8 * -2.0,  # ratio 0.5 < 1 - eps, A < 0: clipped to 0.8
        1.1 * 3.0,   # inside the range: ratio * A
        0.5 * 1.0,   # below the range but A > 0: the unclipped (smaller) term
        1.5 * -1.0,  # above the range but A < 0: the unclipped (smaller) term
    ])
    assert torch.allclose(obj[:, 0], expected, atol=1e-6)
    obj.sum().backward()
    grad = logp_new.grad[:, 0]
    # d(ratio * A)/d logp_new = ratio * A where unclipped; exactly 0 where clipped
    assert grad[0] == 0 and grad[1] == 0
    assert torch.allclose(grad[2:], torch.tensor([1.1 * 3.0, 0.5 * 1.0, 1.5 * -1.0]), atol=1e-6)


def test_clipped_objective_rejects_bad_shapes():
    with pytest.raises(ValueError, match="advantages"):
        clipped_objective(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="logp_old"):
        clipped_objective(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))


# ----------------------------------------------------------------------------- k3 KL


def test_kl_k3_zero_hand_value_and_non_negative():
    logp = torch.log(torch.tensor([[0.1, 0.5, 0.9]]))
    mask = torch.ones(1, 3)
    assert torch.equal(kl_k3(logp, logp.clone(), mask), torch.zeros(1, 3))
    # pi_theta = 0.5, pi_ref = 0.25: r = 0.5, k3 = r - log r - 1
    hand = 0.5 - math.log(0.5) - 1
    value = kl_k3(torch.log(torch.tensor([[0.5]])), torch.log(torch.tensor([[0.25]])), torch.ones(1, 1))
    assert value.item() == pytest.approx(hand, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 7, generator=g) * 3, torch.randn(50, 7, generator=g) * 3
    assert (kl_k3(a, b, torch.ones(50, 7)) >= 0).all()


def test_kl_k3_is_unbiased_for_kl():
    """E_{x ~ pi_theta}[k3(x)] = KL(pi_theta || pi_ref): summing over the vocabulary weighted by pi_theta."""
    g = torch.Generator().manual_seed(1)
    logp = torch.log_softmax(torch.randn(1, 6, generator=g), -1)
    logq = torch.log_softmax(torch.randn(1, 6, generator=g), -1)
    exact = (logp.exp() * (logp - logq)).sum()
    expectation = (logp.exp() * kl_k3(logp, logq, torch.ones(1, 6))).sum()
    assert expectation.item() == pytest.approx(exact.item(), rel=1e-5)


# ----------------------------------------------------------------------------- masking and normalisation


def test_completion_mask_keeps_eos_drops_padding():
    tokens = torch.tensor([[5, 7, 7, 7], [1, 2, 3, 4], [7, 1, 7, 2]])
    assert torch.equal(completion_mask(tokens, 7), torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]))
    assert torch.equal(completion_mask(tokens, None), torch.ones(3, 4))


def test_grpo_loss_ignores_padding_and_averages_per_completion():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    logp_old = torch.full((2, 4), -1.0)
    logp_new = logp_old + torch.tensor([[0.1, 0.0, -0.1, 0.05], [0.05, 0.0, 0.0, 0.0]])
    logp_ref = logp_old - 0.3
    adv = torch.tensor([1.0, -1.0])
    beta, eps = 0.1, 0.2
    loss = grpo_loss(logp_new, logp_old, logp_ref, adv, mask, eps, beta)
    # by hand: per token min(rA, clip(r)A) - beta k3, mean over each completion's tokens, then over the group
    per_seq = []
    for i, n in enumerate([4, 1]):
        total = 0.0
        for t in range(n):
            r = math.exp(logp_new[i, t] - logp_old[i, t])
            a = adv[i].item()
            d = (logp_ref[i, t] - logp_new[i, t]).item()
            total += min(r * a, min(max(r, 1 - eps), 1 + eps) * a) - beta * (math.exp(d) - d - 1)
        per_seq.append(total / n)
    assert loss.item() == pytest.approx(-(per_seq[0] + per_seq[1]) / 2, rel=1e-5)
    # whatever sits in the padding changes nothing
    garbage = torch.where(mask.bool(), torch.zeros(2, 4), torch.full((2, 4), 50.0))
    loss2 = grpo_loss(logp_new + garbage, logp_old - garbage, logp_ref + garbage, adv, mask, eps, beta)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    # the token-level mean over the batch would differ: the short completion weighs as much as the long one
    token_mean = -(per_seq[0] * 4 + per_seq[1] * 1) / 5
    assert loss.item() != pytest.approx(token_mean, rel=1e-3)


def test_grpo_loss_needs_reference_when_beta_positive():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="logp_ref"):
        grpo_loss(z, z, None, torch.zeros(1), torch.ones(1, 2), beta=0.1)
    assert grpo_loss(z, z, None, torch.ones(1), torch.ones(1, 2), beta=0.0).item() == pytest.approx(-1.0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=0)
    with pytest.raises(ValueError, match="clip_eps"):
        GRPOConfig(clip_eps=1.5)
    with pytest.raises(ValueError, match="temperature"):
        GRPOConfig(temperature=0.0)


# ----------------------------------------------------------------------------- model side


def tiny_lm(mixer="attention"):
    torch.manual_seed(0)
    return CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer=mixer))


def test_sample_group_masks_after_eos_and_logprobs_match_decoding():
    model = tiny_lm("gla")
    prompt = torch.tensor([1, 2, 5])
    gen = torch.Generator().manual_seed(3)
    tokens, mask = sample_group(model, prompt, group_size=16, max_new_tokens=6, eos_id=7, generator=gen)
    assert tokens.shape[0] == 16 and tokens.shape[1] <= 6
    assert torch.equal(mask, completion_mask(tokens, 7))
    ended = (tokens == 7).any(1)
    assert ended.any(), "with vocabulary 8 some of 16 completions should sample EOS within 6 tokens"
    for row, m in zip(tokens, mask):
        if (row == 7).any():
            first = int((row == 7).nonzero()[0])
            assert m[: first + 1].all() and not m[first + 1 :].any()
    # the training forward gives the same token log-probs as decoding step by step
    logp = token_logprobs(model, prompt, tokens)
    with torch.no_grad():
        logits, state = model.prefill(prompt[None].expand(16, -1).contiguous())
        for t in range(tokens.shape[1]):
            step_logp = torch.log_softmax(logits.float(), -1).gather(-1, tokens[:, t : t + 1]).squeeze(-1)
            assert torch.allclose(step_logp, logp[:, t], atol=1e-4)
            logits, state = model.step(tokens[:, t], state)


def test_grpo_raises_reward_on_a_tiny_model():
    """Reward = the share of completion tokens equal to 3 (about 1/8 at random); EOS = 7."""
    model = tiny_lm("attention")

    def reward(prompt, completion):
        return sum(t == 3 for t in completion) / max(len(completion), 1)

    cfg = GRPOConfig(group_size=8, lr=3e-2, steps=30, max_new_tokens=6, eos_id=7, beta=0.04, mu=2, seed=0)
    history = grpo_train(model, None, [[1, 2], [5, 1, 6]], reward, cfg, progress=False)
    assert len(history["reward"]) == len(history["kl"]) == len(history["length"]) == 30
    first, last = sum(history["reward"][:5]) / 5, sum(history["reward"][-10:]) / 10
    assert last > first + 0.3 and last > 0.7, (first, last)
    assert all(math.isfinite(k) and k >= 0 for k in history["kl"])
    assert history["kl"][-1] > 0  # the policy moved away from its frozen reference
    assert all(1 <= n <= 6 for n in history["length"])
