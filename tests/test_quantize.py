"""Tests of the vector quantizers (Chapter 2)."""
import pytest
import torch

from musiclm_mini.config import RVQConfig, get_preset
from musiclm_mini.tokenizers.quantize import QuantizerOutput, ResidualVQ, VectorQuantizer, codebook_stats, kmeans

torch.set_num_threads(1)


def gaussian_mixture(n: int, dim: int = 2, centres: int = 8, seed: int = 0, spread: float = 0.1):
    """n points (1, n, dim) around `centres` fixed random centres; seed picks the points only."""
    means = torch.randn(centres, dim, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(0, centres, (n,), generator=g)
    return (means[which] + spread * torch.randn(n, dim, generator=g)).unsqueeze(0)


def fit(module, data, steps=30, batch=256):
    module.train()
    for i in range(steps):
        start = (i * batch) % (data.shape[1] - batch)
        module(data[:, start:start + batch])
    return module.eval()


def test_vq_shapes_and_output_type():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 32)
    x = torch.randn(3, 7, 16)
    out = vq(x)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == (3, 7, 16)
    assert out.codes.shape == (3, 7) and out.codes.dtype == torch.long
    assert out.loss.ndim == 0
    assert vq.encode(x).shape == (3, 7)
    assert vq.decode(out.codes).shape == (3, 7, 16)
    vq.eval()
    assert torch.allclose(vq(x).quantized, vq.decode(vq.encode(x)), atol=1e-6)


def test_rvq_shapes_and_partial_decode():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, 4, 16, quantizer_dropout=False)
    x = torch.randn(2, 10, 8)
    out = rvq(x)
    assert out.quantized.shape == (2, 10, 8) and out.codes.shape == (2, 4, 10) and out.loss.ndim == 0
    rvq.eval()
    codes = rvq.encode(x)
    assert codes.shape == (2, 4, 10)
    assert rvq.encode(x, n_q=2).shape == (2, 2, 10)
    assert torch.equal(rvq.encode(x, n_q=2), codes[:, :2])
    two = rvq.decode(codes[:, :2])
    expected = rvq.layers[0].decode(codes[:, 0]) + rvq.layers[1].decode(codes[:, 1])
    assert torch.allclose(two, expected)
    assert torch.allclose(rvq.decode(codes), rvq(x).quantized, atol=1e-5)
    assert rvq(x, n_q=3).codes.shape == (2, 3, 10)


def test_bad_inputs_raise_clear_errors():
    rvq = ResidualVQ(8, 2, 16)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        rvq(torch.randn(2, 10, 7))
    with pytest.raises(ValueError, match="n_q"):
        rvq.encode(torch.randn(1, 3, 8), n_q=3)
    with pytest.raises(ValueError, match="codes must lie"):
        rvq.decode(torch.full((1, 2, 3), 16))
    with pytest.raises(ValueError, match="NaN"):
        rvq(torch.full((1, 3, 8), float("nan")))


def test_straight_through_gradient_reaches_input():
    torch.manual_seed(0)
    for module in (VectorQuantizer(8, 16), ResidualVQ(8, 3, 16, quantizer_dropout=False)):
        x = torch.randn(2, 5, 8, requires_grad=True)
        out = module(x)
        out.quantized.sum().backward()
        # The sum of the output has gradient 1 wrt every input element: identity, not n_q x identity.
        assert torch.allclose(x.grad, torch.ones_like(x))
        x.grad = None
        module(x).loss.backward()
        assert x.grad.abs().sum() > 0  # the commitment loss reaches the encoder too
        assert not any(p.requires_grad for p in module.parameters())  # codebooks are buffers


def test_codebook_is_saved_in_state_dict():
    rvq = ResidualVQ(4, 2, 8)
    keys = rvq.state_dict().keys()
    assert "layers.0.codebook" in keys and "layers.1.initialized" in keys
    assert len(list(rvq.parameters())) == 0


def test_kmeans_finds_mixture_centres():
    torch.manual_seed(0)
    data = gaussian_mixture(2000, centres=4)[0]
    centres, counts = kmeans(data, 4, iters=20)
    assert counts.sum() == 2000
    # Every point ends close to its centre: within-cluster error is about spread^2 * dim.
    err = (data - centres[torch.cdist(data, centres).argmin(1)]).pow(2).sum(1).mean()
    assert err < 0.1


def test_ema_training_reduces_error_on_held_out_data():
    torch.manual_seed(0)
    train, held_out = gaussian_mixture(8000, seed=1), gaussian_mixture(2000, seed=2)
    vq = VectorQuantizer(2, 16, ema_decay=0.9, kmeans_init=False, dead_code_threshold=0.0)
    before = (vq.eval().decode(vq.encode(held_out)) - held_out).pow(2).mean()
    fit(vq, train, steps=60)
    after = (vq.decode(vq.encode(held_out)) - held_out).pow(2).mean()
    assert after < 0.2 * before


def test_dead_code_restarts_revive_a_collapsed_codebook():
    data = gaussian_mixture(8000, seed=1)

    def collapsed(threshold):
        torch.manual_seed(0)
        vq = VectorQuantizer(2, 16, ema_decay=0.9, kmeans_init=False, dead_code_threshold=threshold)
        with torch.no_grad():  # all codes far away and equal: only code 0 is ever chosen
            vq.codebook.copy_(torch.full((16, 2), 50.0))
            vq.embed_sum.copy_(vq.codebook)
        return vq

    held_out = gaussian_mixture(2000, seed=2)
    without = fit(collapsed(0.0), data)
    with_restarts = fit(collapsed(1.0), data)
    usage_without = codebook_stats(without.encode(held_out), 16)["usage"]
    usage_with = codebook_stats(with_restarts.encode(held_out), 16)["usage"]
    assert usage_without <= 2 / 16
    assert usage_with >= 0.75
    err = lambda vq: (vq.decode(vq.encode(held_out)) - held_out).pow(2).mean()
    assert err(with_restarts) < 0.5 * err(without)


def test_rvq_error_decreases_with_levels_on_held_out_data():
    torch.manual_seed(0)
    train = torch.randn(1, 8000, 4)
    held_out = torch.randn(1, 2000, 4)
    rvq = fit(ResidualVQ(4, 6, 16, quantizer_dropout=False, ema_decay=0.9), train, steps=40)
    errors = rvq.residual_errors(held_out)
    assert errors.shape == (6,)
    assert (errors[1:] < errors[:-1]).all(), errors
    assert errors[-1] < 0.5 * errors[0]
    assert errors[0] < held_out.pow(2).mean()  # one level already beats "predict zero"


def test_quantizer_dropout_varies_levels_in_training_only():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 5, 8, quantizer_dropout=True).train()
    x = torch.randn(2, 6, 4)
    levels = {rvq(x).codes.shape[1] for _ in range(40)}
    assert levels == {1, 2, 3, 4, 5}
    assert rvq(x, n_q=2).codes.shape[1] == 2
    rvq.eval()
    assert {rvq(x).codes.shape[1] for _ in range(5)} == {5}
    assert ResidualVQ(4, 5, 8, quantizer_dropout=False).train()(x).codes.shape[1] == 5


def test_eval_mode_does_not_update_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 2, 8).eval()
    before = rvq.codebooks.clone()
    rvq(torch.randn(2, 20, 4))
    assert torch.equal(before, rvq.codebooks)
    assert not rvq.layers[0].initialized  # k-means waits for the first training batch


def test_deterministic_given_seed():
    def run():
        torch.manual_seed(7)
        rvq = ResidualVQ(4, 3, 16, quantizer_dropout=True).train()
        outs = [rvq(torch.randn(2, 50, 4)) for _ in range(5)]
        return rvq.codebooks, [o.codes for o in outs]

    (books_a, codes_a), (books_b, codes_b) = run(), run()
    assert torch.equal(books_a, books_b)
    assert all(torch.equal(a, b) for a, b in zip(codes_a, codes_b))


def test_codebook_stats():
    codes = torch.tensor([[0, 0, 1, 1]])
    stats = codebook_stats(codes, 4)
    assert stats["usage"] == pytest.approx(0.5)
    assert stats["perplexity"] == pytest.approx(2.0)
    levels = codebook_stats(torch.tensor([[[0, 1, 2, 3], [0, 0, 0, 0]]]), 4)
    assert torch.allclose(levels["usage"], torch.tensor([1.0, 0.25]))
    assert torch.allclose(levels["perplexity"], torch.tensor([4.0, 1.0]))


def test_from_config_paper_and_tiny():
    paper = get_preset("paper").codec.rvq
    rvq = ResidualVQ.from_config(paper)
    assert paper == RVQConfig(12, 1024, 512)
    assert rvq.codebooks.shape == (12, 1024, 512)
    assert rvq.bits_per_frame == 120
    tiny = ResidualVQ.from_config(get_preset("tiny").codec.rvq)
    out = tiny.train()(torch.randn(1, 30, tiny.dim))
    assert out.quantized.shape == (1, 30, tiny.dim)


# ---------------------------------------------------------------------------------------------
# The chapter's exercise
# ---------------------------------------------------------------------------------------------
def test_exercise_stub_fails_and_reference_passes(capsys):
    from musiclm_mini.exercises import check_residual_encode

    def stub(x, codebooks):
        raise NotImplementedError

    def no_residual(x, codebooks):  # a typical mistake: every level quantizes x itself
        d = torch.cdist(x.reshape(-1, x.shape[-1]).unsqueeze(0).expand(len(codebooks), -1, -1), codebooks)
        return d.argmin(-1).reshape(len(codebooks), x.shape[0], x.shape[1]).transpose(0, 1)

    assert check_residual_encode(stub) is False
    assert "not implemented" in capsys.readouterr().out
    assert check_residual_encode(no_residual) is False
    assert "residual" in capsys.readouterr().out
    def with_the_package(x, codebooks):  # the chapter's ResidualVQ, graded against the exercise's own reference
        Q, K, D = codebooks.shape
        rvq = ResidualVQ(D, Q, K, quantizer_dropout=False, kmeans_init=False).eval()
        with torch.no_grad():
            for layer, book in zip(rvq.layers, codebooks):
                layer.codebook.copy_(book)
        return rvq.encode(x)

    assert check_residual_encode(with_the_package) is True
    assert "All checks passed" in capsys.readouterr().out


def test_reference_exercise_agrees_with_residual_vq():
    from musiclm_mini.exercises.rvq import reference_residual_encode

    torch.manual_seed(0)
    rvq = fit(ResidualVQ(4, 3, 16, quantizer_dropout=False), torch.randn(1, 2000, 4), steps=5)
    x = torch.randn(2, 9, 4)
    assert torch.equal(reference_residual_encode(x, rvq.codebooks), rvq.encode(x))


# ---------------------------------------------------------------------------------------------
# torch.distributed: replicas that see different batches must keep identical codebooks
# ---------------------------------------------------------------------------------------------
def _ddp_worker(rank, world, init_file, result_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different data *and* different random draws on each replica
    rvq = ResidualVQ(4, 3, 8, quantizer_dropout=True).train()
    levels = [rvq(torch.randn(2, 20, 4) + rank).codes.shape[1] for _ in range(6)]
    torch.save({"books": rvq.codebooks, "levels": torch.tensor(levels)}, f"{result_dir}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_replicas_agree(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "0.pt", weights_only=True)
    b = torch.load(tmp_path / "1.pt", weights_only=True)
    assert torch.equal(a["levels"], b["levels"])
    assert torch.allclose(a["books"], b["books"])


def test_small_batches_do_not_leave_duplicate_kmeans_codes_behind():
    # 40 vectors for 128 codes: k-means must duplicate centres; the duplicates start with count 0,
    # so restarts spread them over later batches instead of waiting for their EMA count to decay.
    torch.manual_seed(0)
    data = gaussian_mixture(8000, dim=16, centres=100, seed=1)
    held_out = gaussian_mixture(2000, dim=16, centres=100, seed=2)
    vq = fit(VectorQuantizer(16, 128, dead_code_threshold=0.1), data, steps=60, batch=40)
    assert codebook_stats(vq.encode(held_out), 128)["usage"] > 0.75  # 0.52 when duplicates start at count 1
    assert (vq.decode(vq.encode(held_out)) - held_out).pow(2).mean() < 1.0  # 3.1 when they do


def test_fit_on_a_set_of_vectors_is_seeded_and_each_level_helps():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    a, b = ResidualVQ(16, 4, 32, quantizer_dropout=False), ResidualVQ(16, 4, 32, quantizer_dropout=False)
    errors = a.fit(x, steps=5, seed=3)
    assert torch.equal(errors, b.fit(x, steps=5, seed=3)) and not a.training
    assert errors.shape == (4,) and (errors[1:] < errors[:-1]).all() and errors[0] < x.var()
    assert torch.equal(a.encode(x[None]), b.encode(x[None]))
