import torch

from molformer_kd.modeling.layers import CategoricalFeatureEmbedding, MultiheadSelfAttention, PreLNTransformerLayer


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


def _feature_ids(shape, feature_dims, seed=0):
    """Ids in [0, size] per column (0 = none), about a third of them 0."""
    g = torch.Generator().manual_seed(seed)
    columns = [torch.randint(0, size + 1, shape, generator=g) for size in feature_dims]
    ids = torch.stack(columns, dim=-1)
    return ids * (torch.rand(ids.shape, generator=g) > 0.3)


def test_categorical_embedding_is_the_sum_of_its_tables_and_keeps_the_checkpoint_layout():
    torch.manual_seed(0)
    dims = [119, 5, 12, 12, 10, 6, 6, 2, 2]
    embedding = CategoricalFeatureEmbedding(dims, 16)
    assert set(embedding.state_dict()) == {f"tables.{c}.weight" for c in range(len(dims))}
    assert [tuple(t.weight.shape) for t in embedding.tables] == [(size + 1, 16) for size in dims]
    ids = _feature_ids((3, 5), dims)
    by_table = sum(table(ids[..., c]) for c, table in enumerate(embedding.tables))
    torch.testing.assert_close(embedding(ids), by_table, atol=1e-6, rtol=0)
    assert torch.equal(embedding(torch.zeros(2, len(dims), dtype=torch.long)), torch.zeros(2, 16))


def test_categorical_embedding_sum_over_an_axis_and_padding_rows_stay_zero():
    torch.manual_seed(0)
    dims = [5, 6, 2]
    embedding = CategoricalFeatureEmbedding(dims, 4)
    ids = _feature_ids((2, 6, 6, 3), dims)
    for dim in (2, 1, 0):
        torch.testing.assert_close(embedding.sum_over(ids, dim), embedding(ids).sum(dim), atol=1e-6, rtol=1e-6)
    (embedding(ids).square().sum() + embedding.sum_over(ids, 2).square().sum()).backward()
    for table in embedding.tables:
        assert table.weight.grad[0].abs().max() == 0  # padding rows never learn
        assert table.weight.grad[1:].abs().max() > 0
