"""Batch-group augmentation: each augmentation does what it says at a legal place, the
group structure of an epoch's choices, fresh and reproducible draws, batching."""

import pytest
import torch

from netgraph import RecipeError, load_recipe
from netgraph.train.augment import (
    AlternatingFlip,
    BatchGroupLoader,
    Crop,
    Cutout,
    Flip,
    Translate,
    check_augmentations,
    draw_choices,
    eval_batches,
)
from netgraph.train.config import data_config

SEED_AUGMENTATIONS = [Crop(32), Flip(), Cutout(8)]  # the seed's, on images padded 32 -> 40


def numbered_images(n, channels=3, size=40):
    """Images whose every pixel value is distinct, so a window identifies its place."""
    return torch.arange(n * channels * size * size, dtype=torch.float32).view(n, channels, size, size)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_choice_counts_of_the_seed():
    assert Crop(32).num_choices((3, 40, 40)) == 81
    assert Flip().num_choices((3, 32, 32)) == 2
    assert Cutout(8).num_choices((3, 32, 32)) == 625
    assert Cutout(5).num_choices((3, 32, 32)) == 784
    assert check_augmentations(SEED_AUGMENTATIONS, (3, 40, 40)) == (3, 32, 32)


def test_crop_takes_the_right_window_of_the_padded_image():
    images = numbered_images(200)
    crop = Crop(32)
    choice = torch.randint(0, 81, (200,), generator=generator())
    index = torch.randperm(200, generator=generator(1))[:64]
    x = crop.gather(images, index, choice[index])
    assert x.shape == (64, 3, 32, 32)
    # Reference: every 32 x 32 window, then the one at each image's (top, left).
    windows = images.unfold(2, 32, 1).unfold(3, 32, 1)  # N x C x 9 x 9 x 32 x 32
    top, left = choice[index] // 9, choice[index] % 9
    assert 0 <= int(top.min()) and int(top.max()) <= 8 and 0 <= int(left.min()) and int(left.max()) <= 8
    expected = windows[index, :, top, left]
    assert torch.equal(x, expected)
    assert torch.equal(crop.apply(images[index], choice[index]), expected)


def test_flip_mirrors_exactly_the_chosen_images():
    x = numbered_images(16, size=32)
    choice = torch.tensor([0, 1] * 8)
    y = Flip().apply(x, choice)
    assert torch.equal(y[choice == 0], x[choice == 0])
    assert torch.equal(y[choice == 1], x[choice == 1].flip(-1))
    assert torch.equal(y[1, :, :, 0], x[1, :, :, 31]) and torch.equal(y[1, :, 5, 31], x[1, :, 5, 0])


@pytest.mark.parametrize("size", [8, 5])
def test_cutout_zeroes_one_square_inside_the_image(size):
    n = 300
    places = (32 - size + 1) ** 2
    choice = torch.randperm(places, generator=generator())[:n] if places >= n else torch.arange(n) % places
    y = Cutout(size).apply(torch.ones(n, 3, 32, 32), choice)
    zero = y == 0
    assert torch.equal(zero.sum(dim=(2, 3)), torch.full((n, 3), size * size))  # per image, per channel
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # the same square in every channel
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)  # n x 32 each
    assert torch.equal(rows.sum(1), torch.full((n,), size)) and torch.equal(
        cols.sum(1), torch.full((n,), size)
    )
    assert torch.equal(zero[:, 0], rows[:, :, None] & cols[:, None, :])  # a square, not a scatter
    top = rows.float().argmax(1)
    left = cols.float().argmax(1)
    assert torch.equal(top * (32 - size + 1) + left, choice)  # at the chosen place, fully inside


def test_cutout_keeps_the_rest_untouched():
    x = numbered_images(4, size=32) + 1
    y = Cutout(8).apply(x, torch.tensor([0, 624, 300, 17]))
    assert torch.equal(y[y != 0], x[y != 0])
    assert (y[0, :, :8, :8] == 0).all() and (y[1, :, 24:, 24:] == 0).all()


def check_groups(choice, n, groups):
    """`groups` distinct choices, each shared by n // groups or that plus one images."""
    counts = torch.bincount(choice)
    used = counts[counts > 0]
    assert len(used) == groups
    assert int(used.min()) >= n // groups and int(used.max()) <= -(-n // groups)
    assert int(used.sum()) == n


def test_group_structure_of_one_epoch():
    n = 1000
    crop, flip, cutout = draw_choices(n, SEED_AUGMENTATIONS, (3, 40, 40), generator())
    check_groups(crop, n, 81)
    check_groups(flip, n, 2)
    check_groups(cutout, n, 200)  # 625 places, capped at 200
    assert int(crop.max()) < 81 and int(cutout.max()) < 625 and int(crop.min()) >= 0
    assert crop.dtype == torch.int64 and crop.shape == (n,)
    # Groups are of shuffled images: the flipped half is not the first half.
    assert 0 < int(flip[: n // 2].sum()) < n // 2


def test_group_cap_and_tiny_data_sets():
    crop, cutout = draw_choices(1000, [Crop(32), Cutout(8)], (3, 40, 40), generator(), max_groups=10)
    check_groups(crop, 1000, 10)
    check_groups(cutout, 1000, 10)
    (crop,) = draw_choices(7, [Crop(32)], (3, 40, 40), generator())  # fewer images than choices
    check_groups(crop, 7, 7)


def test_sampled_choices_change_every_epoch():
    g = generator()
    first = draw_choices(1000, SEED_AUGMENTATIONS, (3, 40, 40), g)
    second = draw_choices(1000, SEED_AUGMENTATIONS, (3, 40, 40), g)
    for a, b in zip(first, second):
        assert not torch.equal(a, b)
    assert set(first[2].unique().tolist()) != set(second[2].unique().tolist())  # a new 200 of 625


def labelled_images(n, size=40):
    """Image i is filled with i + 1 and labelled i, so a batch shows which images it holds."""
    images = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return images, torch.arange(n)


def test_batches_pair_images_with_their_labels_and_cover_each_image_once():
    images, labels = labelled_images(1100)
    loader = BatchGroupLoader(images, labels, 512, SEED_AUGMENTATIONS, drop_last=False)
    seen = []
    for x, y in loader:
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(x.amax(dim=(1, 2, 3)), (y + 1).float())  # cutout zeroes 64 of 1,024 pixels
        assert torch.equal(((x == 0).sum(dim=(1, 2, 3))), torch.full((len(y),), 3 * 64))
        seen.append(y)
    assert torch.equal(torch.cat(seen).sort().values, labels)


def test_len_and_batch_shapes():
    images, labels = labelled_images(1100)
    dropped = BatchGroupLoader(images, labels, 512, SEED_AUGMENTATIONS)
    assert len(dropped) == 2 and [tuple(x.shape) for x, _ in dropped] == [(512, 3, 32, 32)] * 2
    kept = BatchGroupLoader(images, labels, 512, SEED_AUGMENTATIONS, drop_last=False)
    assert len(kept) == 3 and [len(y) for _, y in kept] == [512, 512, 76]
    cifar = torch.empty(50000, 1, 1, 1)
    assert len(BatchGroupLoader(cifar, torch.zeros(50000, dtype=torch.int64), 512)) == 97
    assert len(BatchGroupLoader(cifar, torch.zeros(50000, dtype=torch.int64), 512, drop_last=False)) == 98


def epochs(loader, count):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(count)]


def same(a, b):
    return all(
        torch.equal(xa, xb) and torch.equal(ya, yb)
        for ea, eb in zip(a, b)
        for (xa, ya), (xb, yb) in zip(ea, eb)
    )


def test_reproducible_under_a_seed_and_new_every_epoch():
    images = torch.randn(600, 3, 40, 40, generator=generator(5))
    labels = torch.arange(600)
    a = epochs(BatchGroupLoader(images, labels, 128, SEED_AUGMENTATIONS, seed=3), 2)
    b = epochs(BatchGroupLoader(images, labels, 128, SEED_AUGMENTATIONS, seed=3), 2)
    c = epochs(BatchGroupLoader(images, labels, 128, SEED_AUGMENTATIONS, seed=4), 2)
    assert same(a, b)
    assert not same(a, c)
    assert not torch.equal(a[0][0][0], a[1][0][0])  # epoch 2 is a new draw
    assert not torch.equal(a[0][0][1], a[1][0][1])  # and a new batch order


def test_without_augmentation_or_shuffle_batches_are_the_data_in_order():
    images, labels = torch.randn(1100, 3, 32, 32), torch.arange(1100)
    loader = BatchGroupLoader(images, labels, 512, [], shuffle=False, drop_last=False)
    batches = list(loader)
    assert torch.equal(torch.cat([x for x, _ in batches]), images)
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    plain = list(eval_batches(images, labels, 512))
    assert [len(y) for _, y in plain] == [512, 512, 76]
    assert torch.equal(torch.cat([x for x, _ in plain]), images)
    assert torch.equal(torch.cat([y for _, y in plain]), labels)


def test_mistakes_are_clear():
    images, labels = torch.zeros(10, 3, 40, 40), torch.arange(10)
    with pytest.raises(RecipeError, match="crop size 48 does not fit"):
        BatchGroupLoader(images, labels, 4, [Crop(48)])
    with pytest.raises(RecipeError, match="cutout size 33 does not fit"):
        BatchGroupLoader(images, labels, 4, [Crop(32), Cutout(33)])
    with pytest.raises(RecipeError, match="batch size"):
        BatchGroupLoader(images, labels, 0)
    with pytest.raises(ValueError, match="one label per image"):
        BatchGroupLoader(images, labels[:5], 4)


@pytest.mark.cuda
def test_on_the_gpu_with_a_generator_there():
    images, labels = labelled_images(1100)
    images, labels = images.cuda().half(), labels.cuda()
    a = epochs(BatchGroupLoader(images, labels, 512, SEED_AUGMENTATIONS, seed=1), 2)
    b = epochs(BatchGroupLoader(images, labels, 512, SEED_AUGMENTATIONS, seed=1), 2)
    assert same(a, b)
    x, y = a[0][0]
    assert x.is_cuda and x.dtype == torch.float16 and x.shape == (512, 3, 32, 32)
    assert torch.equal(x.float().amax(dim=(1, 2, 3)), (y + 1).float())
    (choice,) = draw_choices(1000, [Cutout(8)], (3, 32, 32), torch.Generator("cuda").manual_seed(0))
    check_groups(choice.cpu(), 1000, 200)


# --- airbench94's per-image augmentations: translate and alternating_flip ---------------


def test_translate_takes_each_image_at_its_own_offset_in_range():
    """Images of 8 x 8 padded by 3 to 14 x 14, translate by 2: image b's window is the
    padded image sliced by hand at (3 + dy, 3 + dx), the offsets uniform over the 25 pairs."""
    n, pad, p = 2000, 3, 2
    images = numbered_images(n, channels=2, size=8 + 2 * pad)
    translate = Translate(p, 8)
    assert translate.output_shape((2, 14, 14)) == (2, 8, 8) and translate.num_choices((2, 14, 14)) == 25
    (choice,) = draw_choices(n, [translate], (2, 14, 14), generator())
    index = torch.randperm(n, generator=generator(1))
    x = translate.gather(images, index, choice[index])
    assert x.shape == (n, 2, 8, 8)
    # Each window's first pixel identifies its place: value = i*2*14*14 + row*14 + col.
    first = x[:, 0, 0, 0].long() - index * (2 * 14 * 14)
    dy, dx = first // 14 - pad, first % 14 - pad
    assert int(dy.abs().max()) == p and int(dx.abs().max()) == p
    for b in (0, 1, 999, n - 1):  # a few images sliced by hand
        top, left = pad + int(dy[b]), pad + int(dx[b])
        assert torch.equal(x[b], images[index[b], :, top : top + 8, left : left + 8])
    assert torch.equal(translate.apply(images[index], choice[index]), x)
    # uniform: each of the 25 (dy, dx) about n / 25 = 80 times; independent per image, so
    # not the equal batch-group counts (which would be exactly 80 each)
    counts = torch.bincount((dy + p) * 5 + (dx + p), minlength=25)
    assert int(counts.min()) > 40 and int(counts.max()) < 130 and len(set(counts.tolist())) > 1
    # a new draw every epoch
    (again,) = draw_choices(n, [translate], (2, 14, 14), generator(), epoch=2)
    assert torch.equal(again, choice)  # the same generator state gives the same draw
    g = generator()
    assert not torch.equal(
        draw_choices(n, [translate], (2, 14, 14), g)[0], draw_choices(n, [translate], (2, 14, 14), g)[0]
    )


def test_translate_first_gathers_straight_from_the_padded_data_set():
    images, labels = labelled_images(300, size=36)  # 32 padded by 2
    loader = BatchGroupLoader(images, labels, 100, [Translate(2, 32), Flip()], seed=0)
    assert loader.gathers and loader.output_shape == (3, 32, 32)
    for x, y in loader:
        assert x.shape == (100, 3, 32, 32) and torch.equal(x.amax(dim=(1, 2, 3)), (y + 1).float())


def test_translate_with_more_padding_uses_the_centre():
    """pad 4, translate 1: offsets relative to the centre, windows start at 3, 4 or 5."""
    images = numbered_images(500, channels=1, size=40)
    (choice,) = draw_choices(500, [Translate(1, 32)], (1, 40, 40), generator())
    x = Translate(1, 32).gather(images, torch.arange(500), choice)
    first = x[:, 0, 0, 0].long() - torch.arange(500) * 1600
    assert set((first // 40).tolist()) == {3, 4, 5} and set((first % 40).tolist()) == {3, 4, 5}


def test_translate_needs_enough_padding(tmp_path):
    with pytest.raises(
        RecipeError,
        match="translate by 2 pixels needs images padded by at least 2 a "
        "side, but these are 34 x 34 for 32-pixel images",
    ) as err:
        BatchGroupLoader(torch.zeros(4, 3, 34, 34), torch.arange(4), 2, [Translate(2, 32)])
    assert "data.pad: 2" in err.value.hint
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  pad: 1\n  augment: [{translate: 2}, flip]\nnetwork:\n  fc: {op: flatten}\n")
    with pytest.raises(RecipeError, match=r"r.yaml:3: translate by 2 pixels needs"):
        data_config(load_recipe(path))
    path.write_text(
        "data:\n  pad: 2\n  augment: [translate, alternating_flip]\nnetwork:\n  fc: {op: flatten}\n"
    )
    translate, alternating = data_config(load_recipe(path)).augmentations
    assert translate == Translate(2, 32) and isinstance(alternating, AlternatingFlip)


def orientation(x):
    """+1 for an image as stored, -1 for its mirror (images whose rows increase left to right)."""
    return torch.sign(x[:, 0, 0, -1] - x[:, 0, 0, 0])


def test_alternating_flip_mirrors_every_image_on_every_other_epoch():
    n = 1000
    images = torch.arange(32, dtype=torch.float32).expand(n, 3, 32, 32).contiguous()
    loader = BatchGroupLoader(images, torch.arange(n), n, [AlternatingFlip()], seed=5, shuffle=False)
    seen = [orientation(next(iter(loader))[0]) for _ in range(4)]  # epochs 1, 2, 3, 4
    assert loader.epoch_number == 4
    flipped = seen[0] == -1
    assert 450 < int(flipped.sum()) < 550  # about half, drawn per image
    assert 0 < int(flipped[:500].sum()) < 500  # not the first half
    assert torch.equal(seen[1], -seen[0])  # epoch 2: every image the mirror of epoch 1's
    assert torch.equal(seen[2], seen[0]) and torch.equal(seen[3], seen[1])
    # image by image, against the flip done here
    x = next(iter(loader))[0]  # epoch 5 = epoch 1
    assert torch.equal(x[flipped], images[flipped].flip(-1)) and torch.equal(x[~flipped], images[~flipped])
    # another seed, another epoch-1 draw; the loader's own stream is left alone
    other = BatchGroupLoader(images, torch.arange(n), n, [AlternatingFlip()], seed=6, shuffle=False)
    assert not torch.equal(orientation(next(iter(other))[0]), seen[0])
    g = generator(5)
    before = g.get_state()
    draw_choices(n, [AlternatingFlip()], (3, 32, 32), g, epoch=3)
    assert torch.equal(g.get_state(), before)


def test_alternating_flip_leaves_the_other_draws_alone():
    """Adding alternating_flip after crop and cutout changes none of their draws."""
    g, h = generator(2), generator(2)
    crop, cutout = draw_choices(500, [Crop(32), Cutout(8)], (3, 40, 40), g)
    crop2, _, cutout2 = draw_choices(500, [Crop(32), AlternatingFlip(), Cutout(8)], (3, 40, 40), h)
    assert torch.equal(crop, crop2) and torch.equal(cutout, cutout2)


@pytest.mark.parametrize("host", [False, True])
def test_resuming_mid_epoch_gives_the_same_batches(host):
    """Epoch 3 of translate + alternating_flip + cutout, resumed in a new loader from its
    state after 2 batches, is the rest of the uninterrupted epoch 3."""
    images = torch.randn(600, 3, 36, 36, generator=generator(5))
    augmentations = [Translate(2, 32), AlternatingFlip(), Cutout(8)]
    loader = BatchGroupLoader(images, torch.arange(600), 100, augmentations, seed=3)
    epochs(loader, 2)
    third = [(x.clone(), y.clone()) for x, y in loader]
    state = loader.epoch_state
    assert loader.epoch_number == 3
    resumed = BatchGroupLoader(images, torch.arange(600), 100, augmentations, seed=3, host=host)
    rest = list(resumed.epoch(state, skip=2, number=3))
    assert len(rest) == 4 and same([third[2:]], [rest])
    # the wrong epoch number: the same translations, but every image mirrored
    wrong = list(
        BatchGroupLoader(images, torch.arange(600), 100, augmentations[:2], seed=3).epoch(
            state, skip=2, number=4
        )
    )
    right = list(
        BatchGroupLoader(images, torch.arange(600), 100, augmentations[:2], seed=3).epoch(
            state, skip=2, number=3
        )
    )
    assert all(torch.equal(a[0], b[0].flip(-1)) for a, b in zip(wrong, right))
