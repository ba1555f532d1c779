"""Batch-group augmentation on the data's own device: the original code's method, vectorised.

Per epoch and per augmentation, the data set is shuffled and split into k equal
contiguous groups (sizes differ by at most one), and every image in a group gets
the group's choice: a crop offset, flip or not, a cutout place. k is the number of
possible choices (81 crops of 32 from 40, 2 flips, 625 cutouts of 8 x 8), but an
augmentation with more than `max_groups` (200) choices uses 200 of them, drawn
at random for the epoch. The original code introduced groups so a GPU runs a handful of
kernels per epoch instead of a few per image; close to an independent choice per
image, but with equal group sizes.

Here the choices for an epoch are a few tensors of one integer per image (drawn
with a handful of randperm/arange calls), and each batch is made by vectorised
indexing: the crop is one gather from the padded data set, the flip a
torch.where, the cutout a mask from broadcast comparisons. Only the padded data
set and one batch are ever in memory (no augmented copy of the data set), and
there is no Python loop over images or groups.

An augmentation may instead draw its own choices, one per image, by defining
``draw(n, shape, generator, epoch)``: airbench94's ``translate`` (an independent
offset per image each epoch) and ``alternating_flip`` (a flip per image drawn once,
then every image mirrored on every other epoch) do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, cast

import torch

from netgraph.core.errors import RecipeError
from netgraph.core.registry import Part, Registry
from netgraph.core.schema import Param

Shape = Tuple[int, int, int]  # (channels, height, width) of one image

# At most this many choices per augmentation per epoch (data.max_groups): the original code's 200.
MAX_GROUPS = 200


class Augmentation(Protocol):
    """What the loader needs of an augmentation; Crop, Flip and Cutout are the three."""

    def check(self, shape: Shape) -> None:
        """Raise a RecipeError if it cannot apply to images of this shape."""

    def num_choices(self, shape: Shape) -> int:
        """How many different ways it can transform an image of this shape."""

    def output_shape(self, shape: Shape) -> Shape:
        """The shape of an image after it."""

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Batch x (B x C x H x W) with image b transformed by choice[b]."""

    # Optional, not part of the protocol's required four: ``draw(n, shape, generator, epoch)``
    # -> an int64 tensor of n choices (one per image, on the generator's device; epoch is
    # 1-based), used by draw_choices instead of the batch-group draw. And ``gather(images,
    # index, choice)``: the batch images[index] transformed, read straight from the padded
    # data set, which the loader uses when the augmentation comes first (Crop, Translate).


class _Gathering(Augmentation, Protocol):
    """An augmentation with the optional ``gather`` (Crop, Translate)."""

    def gather(self, images: torch.Tensor, index: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """The batch images[index] transformed by choice, read straight from ``images``."""


def _image_shape(images: torch.Tensor) -> Shape:
    """One image's (C, H, W) of a batch or data set of N x C x H x W images."""
    return cast("Shape", tuple(images.shape[1:]))  # a cast only: the tuple is as it was


def _top_left(choice: torch.Tensor, shape: Shape, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Choice number -> (top, left) of a size x size square inside the image; the
    (H - size + 1) x (W - size + 1) places are numbered row by row."""
    across = shape[2] - size + 1
    return choice // across, choice % across


def _windows(
    images: torch.Tensor, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """The height x width windows of images[index] starting at (top, left), one per image,
    in one gather from the flat (contiguous) data set.

    Pixel (channel, row, col) of a window starting at (top, left) of image i lies at
    i*C*H*W + channel*H*W + (top + row)*W + (left + col) of the flat data: a start per
    image plus one C x h x w block of offsets shared by all: about twice as fast on
    a CPU (3 ms against 6 ms for a batch of 512) as indexing with four broadcast
    index tensors."""
    _, channels, rows, cols = images.shape
    start = index * (channels * rows * cols) + top * cols + left  # B
    channel = torch.arange(channels, device=images.device).view(-1, 1, 1)
    row = torch.arange(height, device=images.device).view(1, -1, 1)
    col = torch.arange(width, device=images.device).view(1, 1, -1)
    offsets = channel * (rows * cols) + row * cols + col  # C x h x w
    return images.view(-1)[start.view(-1, 1, 1, 1) + offsets]  # B x C x h x w


@dataclass(frozen=True)
class _Square:
    """A size x size square placed anywhere inside the image: one choice per place."""

    size: int

    def check(self, shape: Shape) -> None:
        if not 0 < self.size <= min(shape[1:]):
            name = type(self).__name__.lower()
            raise RecipeError(
                f"{name} size {self.size} does not fit in images of {shape[1]} x {shape[2]}",
                hint=f"use a smaller {name}" + (" or pad the images more" if name == "crop" else ""),
            )

    def num_choices(self, shape: Shape) -> int:
        return (shape[1] - self.size + 1) * (shape[2] - self.size + 1)


@dataclass(frozen=True)
class Crop(_Square):
    """A size x size window of the (padded) image, at one of every possible offset:
    (40 - 32 + 1)^2 = 81 offsets for 32 from an image padded by 4."""

    def output_shape(self, shape: Shape) -> Shape:
        return (shape[0], self.size, self.size)

    def gather(self, images: torch.Tensor, index: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """The windows of images[index] at their choices, in one gather straight from the
        (contiguous) data set, without copying whole padded images first (_windows)."""
        top, left = _top_left(choice, _image_shape(images), self.size)
        return _windows(images, index, top, left, self.size, self.size)

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return self.gather(x.contiguous(), torch.arange(x.shape[0], device=x.device), choice)


@dataclass(frozen=True)
class Flip:
    """Mirror left to right (choice 1) or not (choice 0)."""

    def check(self, shape: Shape) -> None:
        pass

    def num_choices(self, shape: Shape) -> int:
        return 2

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return torch.where(choice.view(-1, 1, 1, 1) == 1, x.flip(-1), x)


@dataclass(frozen=True)
class Cutout(_Square):
    """Set a size x size square, fully inside the image, to zero (the mean, once the
    images are normalised): (32 - 8 + 1)^2 = 625 places for 8 x 8, 784 for 5 x 5."""

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        top, left = _top_left(choice, _image_shape(x), self.size)
        rows = torch.arange(height, device=x.device).view(1, -1)
        cols = torch.arange(width, device=x.device).view(1, -1)
        in_rows = (rows >= top.view(-1, 1)) & (rows < top.view(-1, 1) + self.size)  # B x H
        in_cols = (cols >= left.view(-1, 1)) & (cols < left.view(-1, 1) + self.size)  # B x W
        square = in_rows.view(-1, 1, height, 1) & in_cols.view(-1, 1, 1, width)  # B x 1 x H x W
        return x.masked_fill(square, 0)


@dataclass(frozen=True)
class Translate:
    """airbench94's translation: each image, independently, moved by an offset (dy, dx)
    drawn uniformly from [-pixels, pixels]^2 every epoch, as the window of the image's size
    starting at (pad + dy, pad + dx) of the padded image (pixels 2 on images padded by 2:
    a 32 crop of 36 at one of 25 places). Choice (dy + p) * (2p + 1) + (dx + p).

    ``image_size`` is the height of the unpadded image: the padding is read from the
    shape it is given, (H_pad - image_size) // 2 a side, so the same offsets mean the same
    shift whatever data.pad is (pad 4, pixels 2: only the central 36 x 36 is used)."""

    pixels: int
    image_size: int

    def _pad(self, shape: Shape) -> int:
        return (shape[1] - self.image_size) // 2

    def check(self, shape: Shape) -> None:
        pad = self._pad(shape)
        if pad < self.pixels:
            raise RecipeError(
                f"translate by {self.pixels} pixels needs images padded by at least "
                f"{self.pixels} a side, but these are {shape[1]} x {shape[2]} for "
                f"{self.image_size}-pixel images (padded by {max(pad, 0)})",
                hint=f"set data.pad: {self.pixels} or more (airbench94: pad 2, translate 2) "
                f"and put translate first, before any crop",
            )

    def num_choices(self, shape: Shape) -> int:
        return (2 * self.pixels + 1) ** 2

    def output_shape(self, shape: Shape) -> Shape:
        pad = self._pad(shape)
        return (shape[0], shape[1] - 2 * pad, shape[2] - 2 * pad)

    def draw(self, n: int, shape: Shape, generator: torch.Generator, epoch: int) -> torch.Tensor:
        """An offset per image, independently and uniformly: not batch groups."""
        return torch.randint(0, self.num_choices(shape), (n,), generator=generator, device=generator.device)

    def gather(self, images: torch.Tensor, index: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """The windows of images[index], in one gather from the data set as Crop's."""
        shape = _image_shape(images)
        pad, side = self._pad(shape), 2 * self.pixels + 1
        top = pad - self.pixels + choice // side  # pad + dy
        left = pad - self.pixels + choice % side  # pad + dx
        _, height, width = self.output_shape(shape)
        return _windows(images, index, top, left, height, width)

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return self.gather(x.contiguous(), torch.arange(x.shape[0], device=x.device), choice)


# Knuth's 64-bit LCG step, to seed alternating_flip's own generator from the loader's seed
# without reproducing the loader's stream (the same seed would give the same first draws).
_MIX_MULTIPLIER, _MIX_INCREMENT = 6364136223846793005, 1442695040888963407


@dataclass(frozen=True)
class AlternatingFlip(Flip):
    """airbench94's alternating flip: at epoch 1 each image is mirrored with probability 1/2,
    independently; at epoch e, image i is mirrored iff base[i] XOR (e is even), so on every
    other epoch every image is the mirror of its epoch-1 orientation. airbench counts epochs
    from 0: its epoch 0 (the random flip drawn before training) is our epoch 1, its odd
    epochs (all mirrored) our even ones.

    base is drawn from a generator of its own, seeded from the loader's seed (the loader
    generator's initial_seed, which its saved states keep), so it takes nothing from the
    loader's stream and is recomputed the same at any epoch, e.g. on resuming at epoch 7.
    Applying a choice is Flip's."""

    def draw(self, n: int, shape: Shape, generator: torch.Generator, epoch: int) -> torch.Tensor:
        seed = (generator.initial_seed() * _MIX_MULTIPLIER + _MIX_INCREMENT) % 2**64
        own = torch.Generator(device=generator.device).manual_seed(seed)
        base = torch.randint(0, 2, (n,), generator=own, device=generator.device)
        return base ^ int(epoch % 2 == 0)


# --- the registry ---------------------------------------------------------------


@dataclass(frozen=True)
class AugmentationSpec(Part):
    """A registered augmentation: ``function(image_size, **params)`` makes it (an object with
    Augmentation's four methods); ``main`` is the parameter ``{name: value}`` sets."""

    main: Optional[str] = None

    def __post_init__(self) -> None:
        if self.main is not None and self.main not in self.params:
            raise ValueError(f"augmentation '{self.name}': main parameter '{self.main}' is not in its params")

    def given(self, value: Any, owner: str) -> Dict[str, Any]:
        """``{cutout: 8}``: the value of the main parameter."""
        return {self.main: value} if self.main is not None else super().given(value, owner)


AUGMENTATIONS = Registry("augmentation", "augmentations", "netgraph.register_augmentation", AugmentationSpec)


def register_augmentation(
    name: str, *, params: Optional[Dict[str, Any]] = None, main: Optional[str] = None, replace: bool = False
):
    """Register an augmentation; decorate ``build(image_size, **params)``, which returns an
    object with Augmentation's methods (``check``, ``num_choices``, ``output_shape``,
    ``apply``). ``params`` is declared as for ops; ``main`` names the parameter a recipe sets
    with ``{name: value}`` (``{cutout: 8}``), the others are set with ``{name: {key: value}}``.
    The loader draws one choice per batch group from ``num_choices`` (README "Augmentation")."""
    return AUGMENTATIONS.decorator(name, params=params, replace=replace, main=main)


@register_augmentation("crop", params={"size": Param(int, None, positive=True, optional=True)}, main="size")
def _crop(image_size: int, size: Optional[int]) -> Crop:
    """A size x size window of the padded image at one of every offset (size: the image's)."""
    return Crop(image_size if size is None else size)


@register_augmentation("flip")
def _flip(image_size: int) -> Flip:
    """Mirror left to right or not, each half of the images."""
    return Flip()


@register_augmentation("cutout", params={"size": Param(int, positive=True)}, main="size")
def _cutout(image_size: int, size: int) -> Cutout:
    """Set a size x size square, fully inside the image, to zero."""
    return Cutout(size)


@register_augmentation("translate", params={"pixels": Param(int, 2, positive=True)}, main="pixels")
def _translate(image_size: int, pixels: int) -> Translate:
    """Move each image by its own offset in [-pixels, pixels]^2 (data.pad >= pixels), each epoch."""
    return Translate(pixels, image_size)


@register_augmentation("alternating_flip")
def _alternating_flip(image_size: int) -> AlternatingFlip:
    """Mirror half the images at epoch 1, drawn per image; every image flips each epoch after."""
    return AlternatingFlip()


def build_augmentation(entry: Any, image_size: int):
    """A recipe's data.augment item made: 'flip', {cutout: 8}, {crop: {size: 28}}; a
    RecipeError for an unknown name or a bad parameter."""
    part, params = AUGMENTATIONS.parse(entry, "data.augment")
    return part.function(image_size, **params)


def check_augmentations(augmentations: Sequence[Augmentation], shape: Shape) -> Shape:
    """Check each augmentation fits the images it will see; return the output image shape."""
    for augmentation in augmentations:
        augmentation.check(shape)
        shape = augmentation.output_shape(shape)
    return shape


def draw_choices(
    n: int,
    augmentations: Sequence[Augmentation],
    shape: Shape,
    generator: torch.Generator,
    max_groups: int = MAX_GROUPS,
    epoch: int = 1,
) -> List[torch.Tensor]:
    """One epoch's choices: for each augmentation, an int64 tensor of one choice per image
    (choices[a][i] is image i's choice for augmentations[a]).

    Per augmentation: k = min(choices, max_groups, n) distinct choices drawn at random;
    a random permutation of the images split into k contiguous groups whose sizes differ
    by at most one (position j of the permutation is in group j * k // n); group g gets
    choice g. An augmentation with a ``draw`` method draws its own instead, given the
    (1-based) epoch. `shape` is one image's shape as the first augmentation sees it."""
    device = generator.device
    choices = []
    for augmentation in augmentations:
        if hasattr(augmentation, "draw"):
            choices.append(augmentation.draw(n, shape, generator, epoch))
            shape = augmentation.output_shape(shape)
            continue
        available = augmentation.num_choices(shape)
        groups = min(available, max_groups, n)
        picked = torch.randperm(available, generator=generator, device=device)[:groups]
        order = torch.randperm(n, generator=generator, device=device)
        group_of_position = torch.arange(n, device=device) * groups // n
        choice = torch.empty(n, dtype=torch.int64, device=device)
        choice[order] = picked[group_of_position]
        choices.append(choice)
        shape = augmentation.output_shape(shape)
    return choices


class BatchGroupLoader:
    """(images, labels) batches for one epoch per iteration, augmented by batch groups.

    images_padded: N x C x H x W, already normalised and padded (see data.preprocess), on
    the device the batches should be on; contiguous, or it is copied once here. Each iteration draws new choices and a new batch
    order from a torch.Generator on that device, seeded with `seed`, so two loaders with
    the same seed yield the same epochs. len() is the number of batches per epoch: 97 for
    50,000 images at 512 with drop_last."""

    def __init__(
        self,
        images_padded: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        augmentations: Sequence[Augmentation] = (),
        seed: int = 0,
        max_groups: int = MAX_GROUPS,
        drop_last: bool = True,
        shuffle: bool = True,
        normalize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: Optional[torch.device] = None,
        host: bool = False,
    ):
        if images_padded.dim() != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(images_padded.shape)}")
        # data.placement: host: images in (pinned) host memory, each batch gathered there and
        # copied to `device` (on a CPU, `host` takes the same path, for the tests)
        self.device = torch.device(device) if device is not None else images_padded.device
        self.host = host or images_padded.device != self.device
        if labels.shape != images_padded.shape[:1] or labels.device != self.device:
            raise ValueError(
                f"need one label per image on the images' device, got labels "
                f"{tuple(labels.shape)} on {labels.device} for images "
                f"{tuple(images_padded.shape)} on {images_padded.device}"
            )
        if batch_size < 1:
            raise RecipeError(f"batch size must be at least 1, got {batch_size}")
        if max_groups < 1:
            raise RecipeError(f"max_groups must be at least 1, got {max_groups}")
        self.images = images_padded.contiguous()  # the crop gathers from its flat view; no copy if already
        self.labels = labels
        self.batch_size = batch_size
        self.augmentations = list(augmentations)
        self.output_shape = check_augmentations(self.augmentations, _image_shape(images_padded))
        self.max_groups = max_groups
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.normalize = normalize  # for images kept as uint8: applied to each batch after the crop
        # Draws on the batches' device, wherever the images are: the same draws either way.
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.epoch_state: Optional[torch.Tensor] = None  # the generator as the current epoch began
        self.epoch_number = 0  # the current epoch's number, 1-based (0: none started yet)
        # The first augmentation, if it can, selects and transforms the batch in one gather
        # from the padded data set (crop, translate), never copying whole padded images.
        self.gathers = bool(self.augmentations) and hasattr(self.augmentations[0], "gather")

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch()

    def epoch(
        self, state: Optional[torch.Tensor] = None, skip: int = 0, number: Optional[int] = None
    ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches; ``number`` is its 1-based number, which epoch-dependent
        augmentations (alternating_flip) read; by default the count of epochs this loader
        has started (1, 2, ...). To continue an interrupted epoch, pass the ``epoch_state``
        it began with, the number of batches already used and the epoch's number: the same
        choices and order are drawn again and the first ``skip`` batches left out."""
        if state is not None:
            self.generator.set_state(state)
        self.epoch_number = self.epoch_number + 1 if number is None else number
        self.epoch_state = self.generator.get_state()
        n, device = self.images.shape[0], self.device
        choices = draw_choices(
            n,
            self.augmentations,
            _image_shape(self.images),
            self.generator,
            self.max_groups,
            self.epoch_number,
        )
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=device)
        else:
            order = torch.arange(n, device=device)
        starts = range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size)
        if self.host:
            yield from self._host_batches(starts, order, choices)
            return
        for start in starts:
            index = order[start : start + self.batch_size]
            yield self._batch(index, choices), self.labels[index]

    def _host_batches(self, starts, order: torch.Tensor, choices: List[torch.Tensor]):
        """data.placement: host. Each batch's (cropped) images are gathered from the host
        copy with the draws made on the device (copied over once an epoch: 8 bytes an image
        each), copied to the device asynchronously from pinned memory, and finished there
        as _batch does; batch i + 1 is gathered before batch i is handed out, so the host's
        gather and copy overlap the device's step on batch i."""
        host_order = order.cpu()
        host_choice = choices[0].cpu() if self.gathers else None
        pin = self.device.type == "cuda"
        pending = None
        for start in list(starts) + [None]:
            ready = pending
            if start is not None:
                index = host_order[start : start + self.batch_size]
                x = (
                    cast(_Gathering, self.augmentations[0]).gather(self.images, index, host_choice[index])
                    if host_choice is not None
                    else self.images[index]
                )
                x = x.pin_memory() if pin else x
                pending = (x.to(self.device, non_blocking=True), order[start : start + self.batch_size])
            if ready is not None:
                yield (
                    self._finish(ready[0], ready[1], choices, host_choice is not None),
                    self.labels[ready[1]],
                )

    def _batch(self, index: torch.Tensor, choices: List[torch.Tensor]) -> torch.Tensor:
        if self.gathers:
            # Select and crop in one gather, never copying the batch's whole padded images.
            x = cast(_Gathering, self.augmentations[0]).gather(
                self.images, index, choices[0][index]
            )  # self.gathers
        else:
            x = self.images[index]
        return self._finish(x, index, choices, self.gathers)

    def _finish(
        self, x: torch.Tensor, index: torch.Tensor, choices: List[torch.Tensor], gathered: bool
    ) -> torch.Tensor:
        """Normalise (before cutout, whose zeros are the mean of normalised data), then the
        augmentations after the first one if it gathered, on the batch's device."""
        augmentations = self.augmentations[1:] if gathered else self.augmentations
        choices = choices[1:] if gathered else choices
        if self.normalize is not None:
            x = self.normalize(x)
        for augmentation, choice in zip(augmentations, choices):
            x = augmentation.apply(x, choice[index])
        return x


def eval_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Every image once, in order, no augmentation, the last batch possibly smaller;
    slices of the data, so nothing is copied."""
    if batch_size < 1:
        raise RecipeError(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]
