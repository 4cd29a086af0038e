import torch

from molformer_kd.modeling.layers import MultiheadSelfAttention, PreLNTransformerLayer


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, 16, generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    bias = torch.randn(3, 4, 7, 7, generator=g)
    return x, mask, bias


def test_sdpa_matches_eager_with_bias_and_padding():
    torch.manual_seed(0)
    layer = PreLNTransformerLayer(16, 4, 32)
    layer.eval()
    x, mask, bias = _inputs()
    sdpa, _ = layer(x, mask, bias)
    layer.attention.attn_implementation = "eager"
    eager, probs = layer(x, mask, bias, output_attentions=True)
    assert torch.allclose(sdpa[mask], eager[mask], atol=1e-5)
    # padded keys receive no probability mass
    assert probs[1, :, :, 5:].abs().max() < 1e-6 and probs[2, :, :, 2:].abs().max() < 1e-6


def test_attention_equals_manual_softmax_formula():
    torch.manual_seed(1)
    attn = MultiheadSelfAttention(16, 4, attn_implementation="eager")
    x, mask, bias = _inputs(1)
    out, probs = attn(x, mask, bias, output_attentions=True)
    q = attn.q_proj(x).view(3, 7, 4, 4).transpose(1, 2)
    k = attn.k_proj(x).view(3, 7, 4, 4).transpose(1, 2)
    v = attn.v_proj(x).view(3, 7, 4, 4).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / 2.0 + bias
    scores[~mask[:, None, None, :].expand_as(scores)] = float("-inf")
    expected_probs = scores.softmax(-1)
    expected = attn.out_proj((expected_probs @ v).transpose(1, 2).reshape(3, 7, 16))
    assert torch.allclose(probs, expected_probs, atol=1e-6)
    assert torch.allclose(out, expected, atol=1e-5)


def test_padding_does_not_leak_into_real_tokens():
    torch.manual_seed(2)
    layer = PreLNTransformerLayer(16, 4, 32).eval()
    x, mask, bias = _inputs(2)
    base, _ = layer(x, mask, bias)
    x2 = x.clone()
    x2[~mask] = 1e3 * torch.randn_like(x2[~mask])
    changed, _ = layer(x2, mask, bias)
    assert torch.allclose(base[mask], changed[mask], atol=1e-5)
