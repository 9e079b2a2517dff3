
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book.data.augment import hflip, random_affine
from book.lab.cnn import CNNInspector, draw_conv1d, feature_maps, saliency
from book.nn.conv import conv2d_loops, conv2d_unfold, maxpool2d_loops, out_size
from book.nn.models import LeNet, deep_mlp


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (2, 0, 3)])
def test_conv_matches_torch(stride, padding, dilation):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 11, 9, generator=g, dtype=torch.float64)
    w, b = torch.randn(5, 3, 3, 2, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    assert torch.allclose(conv2d_loops(x, w, b, stride, padding, dilation), ref)
    assert torch.allclose(conv2d_unfold(x, w, b, stride, padding, dilation), ref)
    assert torch.allclose(conv2d_unfold(x, w, None, stride, padding, dilation), ref - b.view(1, 5, 1, 1))


def test_pool_and_sizes():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(maxpool2d_loops(x), F.max_pool2d(x, 2))
    assert torch.equal(maxpool2d_loops(x, 3, 1), F.max_pool2d(x, 3, 1))
    assert out_size(28, 5, padding=2) == 28 and out_size(224, 7, 2, 3) == 112 and out_size(10, 3, dilation=2) == 6


def test_conv_errors():
    with pytest.raises(ValueError, match="channels"):
        conv2d_unfold(torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        conv2d_loops(torch.zeros(5, 5), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        out_size(3, 5)
    with pytest.raises(ValueError, match="need n"):
        out_size(5, 3, stride=0)


def test_lenet_and_deep_mlp():
    m = LeNet()
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in m.parameters()) == 61706
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m(torch.zeros(3, 784))
    for init in ("default", "naive", "xavier", "he"):
        for norm in (None, "batch", "layer"):
            net = deep_mlp(depth=3, width=16, act="relu", init=init, norm=norm)
            assert net(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    assert deep_mlp(depth=2, width=8, init="naive")[1].weight.std() < 0.02
    with pytest.raises(ValueError, match="unknown init"):
        deep_mlp(init="zeros")
    with pytest.raises(ValueError, match="norm"):
        deep_mlp(norm="group")
    with pytest.raises(ValueError, match="unknown activation"):
        deep_mlp(act="gelu")


def test_augmentation_keeps_shape_and_mass():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    y = random_affine(x, max_shift=2, max_degrees=10, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.15)   # the stroke stays in the image
    assert torch.equal(random_affine(x, 0, 0), x)
    assert torch.equal(hflip(hflip(x)), x)
    with pytest.raises(ValueError):
        random_affine(torch.zeros(28, 28))


def test_inspection_tools():
    model = LeNet()
    imgs, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    assert saliency(model, imgs[0]).shape == (28, 28) and model.training
    assert feature_maps(model, imgs[0], model.features[0]).shape == (6, 28, 28)
    ins = CNNInspector(model, imgs, labels)
    assert 0 <= ins.draw(index=2, layer=1) < 10
    assert "<script" in ins.player("index", range(2)).data
    assert ins.show().live is not None and ins.widgets["index"].max == 3
    with pytest.raises(ValueError, match="layer must be"):
        ins.draw(layer=5)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        CNNInspector(nn.Linear(2, 2), imgs, labels)
    with pytest.raises(ValueError, match="one image"):
        saliency(model, imgs)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    assert draw_conv1d(ax, 8, 3, 2, 1, 1) == 4


@pytest.mark.parametrize("name,good,bad", [
    ("conv_output_size", lambda n, k, s, p, d: (n + 2 * p - d * (k - 1) - 1) // s + 1,
     lambda n, k, s, p, d: (n - k) // s + 1),
    ("conv2d_single", lambda x, w: F.conv2d(x[None, None], w[None, None])[0, 0],
     lambda x, w: F.conv2d(x[None, None], w.flip(0, 1)[None, None])[0, 0]),
    ("maxpool2x2", lambda x: F.max_pool2d(x[None, None], 2)[0, 0], lambda x: F.avg_pool2d(x[None, None], 2)[0, 0]),
    ("conv2d_multi", lambda x, w, b: F.conv2d(x, w, b), lambda x, w, b: F.conv2d(x, w)),
])
def test_cnn_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)




def test_random_hflip_flips_about_half_and_checks_its_arguments():
    from book.data.augment import random_hflip
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28).repeat(50, 1, 1, 1)
    y = random_hflip(x, 0.5, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept)) and 30 < sum(flipped) < 70
    assert torch.equal(random_hflip(x, 0.0), x) and torch.equal(random_hflip(x, 1.0), hflip(x))
    with pytest.raises(ValueError, match="probability"):
        random_hflip(x, 1.5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_hflip(torch.zeros(28, 28))


def test_augmented_batches_change_only_the_images():
    """Runs that differ only in the transform see the same batches in the same order (one change at a time)."""
    from book.lab.cnn import augmented_batches
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10)
    plain = augmented_batches(x, y, None, batch_size=4, seed=3)
    flipped = augmented_batches(x, y, lambda xb, g: xb.flip(-1), batch_size=4, seed=3)
    seen = []
    for step in range(1, 7):                     # more than one epoch: reshuffled each epoch
        (xa, ya), (xb, yb) = plain(step), flipped(step)
        assert torch.equal(ya, yb) and torch.equal(xb, xa.flip(-1))
        assert all(torch.equal(xa[i], x[ya[i]]) for i in range(len(ya)))
        seen.append(ya)
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(10))   # an epoch covers every example once
    with pytest.raises(ValueError, match="examples"):
        augmented_batches(x, y[:5], None)


@pytest.mark.parametrize("name,good,bad", [
    ("dilated_stack_rf", lambda n, k: 1 + (k - 1) * (2 ** n - 1), lambda n, k: 1 + (k - 1) * n),
    ("avgpool_kernel", lambda C, k: torch.full((C, 1, k, k), 1.0 / k ** 2), lambda C, k: torch.ones(C, 1, k, k)),
])
def test_new_cnn_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_avgpool_and_receptive_field_match_torch_and_the_gradient():
    from book.lab.cnn import dilated_lenet_features, gradient_support, layer_geometry, shift, support_box
    from book.nn.conv import avgpool2d_loops, receptive_field
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    for k, s in [(2, None), (3, 2), (3, 1)]:
        assert torch.allclose(avgpool2d_loops(x, k, s), F.avg_pool2d(x, k, s))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        avgpool2d_loops(torch.zeros(4, 4))
    assert receptive_field([(5, 1, 1), (2, 2, 1), (5, 1, 1), (2, 2, 1)]) == (16, 4)
    assert receptive_field([(3, 1, 1)] * 3) == (7, 1) and receptive_field([]) == (1, 1)
    with pytest.raises(ValueError, match="need k"):
        receptive_field([(3, 0, 1)])
    torch.manual_seed(0)
    lenet, dil = LeNet(), dilated_lenet_features()
    assert layer_geometry(lenet.features) == [(5, 1, 1), (2, 2, 1), (5, 1, 1), (2, 2, 1)]
    noise = torch.rand(64, 1, 28, 28)
    for feats, r in ((lenet.features, 16), (dil, 24)):
        assert receptive_field(layer_geometry(feats))[0] == r
        mask = gradient_support(feats, noise)
        assert support_box(mask) == (r, r) and int(mask.sum()) == r * r
    assert support_box(torch.zeros(4, 4, dtype=torch.bool)) == (0, 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gradient_support(dil, torch.rand(28, 28))
    img = torch.arange(25.).view(5, 5)
    assert torch.equal(shift(img, 1, -2)[1:, :3], img[:4, 2:]) and shift(img, 1, -2)[0].abs().sum() == 0
    assert torch.equal(shift(img, 0, 0), img)
    with pytest.raises(ValueError, match="leaves nothing"):
        shift(img, 5, 0)
    with pytest.raises(ValueError, match="images"):
        shift(torch.zeros(3), 1, 1)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    xs = torch.zeros(2, 1, 12, 12)
    xs[:, :, 4:8, 4:8] = torch.rand(2, 1, 4, 4)
    with torch.no_grad():   # equivariance, away from the frame
        assert torch.allclose(conv(shift(xs, 2, 1))[..., 3:10, 3:10], shift(conv(xs), 2, 1)[..., 3:10, 3:10], atol=1e-6)
