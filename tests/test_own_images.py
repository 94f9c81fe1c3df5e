"""A user's photos at the resolution the run asks for, and only the images a mixture uses in the image store.

The photos are real ones nobody on this project made: matplotlib's sample ``grace_hopper.jpg`` (512 x 600), plus a
150 x 176 copy of it standing in for a small original, written into a webdataset shard as img2dataset would.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from harness.config.schema import DataCfg, SourceCfg, SourcesCfg
from harness.data.corpus import build_corpus, run_image_size
from harness.data.formats.images import decode
from harness.data.formats.webdataset import ShardWriter
from harness.data.mixture import Mixture
from harness.world import World, WorldCfg

MICRO_WORLD = WorldCfg(name="shapes_micro", n_train=400, n_val=50, n_test=60, n_docs=150, n_texts=200)
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
OWN = {"caption": SourceCfg(format="webdataset", path="photos/{00000..00000}.tar")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("own_images_cache")


@pytest.fixture(scope="module")
def world(cache):
    return World.build_or_load(MICRO_WORLD, cache)


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """(data_dir, {key: encoded bytes}): the photo, its mirror image and a small copy, in one shard."""
    d = tmp_path_factory.mktemp("own_data")
    big = Image.open(PHOTO).convert("RGB")
    shots = {"hopper": PHOTO.read_bytes(), "mirrored": jpeg(big.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
             "small": jpeg(big.resize((150, 176), Image.Resampling.LANCZOS))}
    with ShardWriter(d / "photos", per_shard=10) as w:
        for key, data in shots.items():
            w.add(key, {"jpg": data, "txt": f"What a {key} photo of Grace Hopper!".encode()})
    return d, shots


def corpus_for(world, cache, data_dir, mixture, image_size=None, logs=None):
    data = DataCfg(name="own", mixture=mixture, sources=SourcesCfg(**OWN))
    return build_corpus([data], world, cache, data_dir, log=(logs.append if logs is not None else print),
                        image_size=image_size)


def test_a_224_px_run_stores_own_photos_at_224_px_from_the_original(world, cache, photos):
    data_dir, shots = photos
    logs: list[str] = []
    corpus = corpus_for(world, cache, data_dir, {"caption": 1.0}, image_size=224, logs=logs)
    store = corpus.images()
    assert store.shape == (3, 224, 224, 3)  # not the world's 128 px
    by_text = {r["texts"][0].split()[2]: r["image"] for r in corpus.part("caption").records}
    hopper = store[by_text["hopper"]]
    assert np.array_equal(hopper, decode(shots["hopper"], 224))  # decoded from the file at 224 px ...
    upsampled = np.asarray(Image.fromarray(decode(shots["hopper"], 128)).resize((224, 224), Image.Resampling.BICUBIC))
    assert np.abs(hopper.astype(int) - upsampled).mean() > 1.0  # ... not a 128 px copy blown up
    src = corpus.summary()["sources"]["caption"]
    assert src["image_px"] == {"width": [150, 512, 512], "height": [176, 600, 600]}
    assert src["stored_px"] == 224 and src["upsampled"] == 1 and corpus.summary()["input_px"] == 224
    warned = [m for m in logs if "warning" in m]
    assert len(warned) == 1 and "'caption': 1 of 3 images" in warned[0] and "224 px" in warned[0]


def test_each_resolution_has_its_own_index_and_store(world, cache, photos):
    data_dir, _ = photos
    at_96 = corpus_for(world, cache, data_dir, {"caption": 1.0}, image_size=96, logs=[])
    at_336 = corpus_for(world, cache, data_dir, {"caption": 1.0}, image_size=336, logs=[])
    assert at_96.images().shape[1] == 96 and at_336.images().shape[1] == 336
    assert at_96.hash != at_336.hash  # two feature-cache entries
    assert at_96.summary()["sources"]["caption"]["upsampled"] == 0
    assert at_336.summary()["sources"]["caption"]["upsampled"] == 1  # 150 x 176 < 336; 512 x 600 is not


def test_own_images_only_mixture_indexes_no_world_image(world, cache, photos):
    """Captions from the user's photos and text from the world: the world's 400 images stay out of the store (and
    so out of the feature bank); the world's text is read."""
    data_dir, _ = photos
    logs: list[str] = []
    corpus = corpus_for(world, cache, data_dir, {"caption": 0.9, "text": 0.1}, image_size=64, logs=logs)
    assert len(corpus.images()) == 3 and corpus.images().shape[1] == 64
    assert not any("webdataset: (default part)" in m for m in logs)  # the world's caption shards were not indexed
    assert len(corpus.part("text")) == len(world.texts("train"))
    ex = Mixture(corpus, {"caption": 1.0}).sample(np.random.default_rng(0))
    assert ex.images[0] in range(3)


def test_world_images_keep_their_native_size_and_ids(world, cache, tmp_path, photos):
    """The world's own data is stored at its native size whatever the resolution (the reference results), and a store
    mixing world and own images holds only the world images its world sources use, at the larger size."""
    world_only = build_corpus([DataCfg(name="w", mixture={"caption": 1.0})], world, cache, tmp_path, log=print,
                              image_size=224)
    default = build_corpus([DataCfg(name="w", mixture={"caption": 1.0})], world, cache, tmp_path, log=print)
    assert world_only.images().shape == world.images("train").shape and world_only.hash == default.hash
    src = world_only.summary()["sources"]["caption"]
    assert src["stored_px"] == 128 and src["upsampled"] == len(world.images("train"))  # said, not hidden
    data_dir, _ = photos
    mixed = build_corpus([DataCfg(name="m", mixture={"caption": 1.0, "interleaved": 1.0},
                                  sources=SourcesCfg(**OWN))], world, cache, data_dir, log=print, image_size=160)
    docs = world.docs("train")
    used = {i for d in docs for i in d["images"] if i is not None}
    assert len(used) < len(world.images("train"))  # so the test tells the used images from the whole export
    assert mixed.images().shape == (len(used) + 3, 160, 160, 3)  # the caption shards' 8000 are not encoded
    first = next(i for i in mixed.part("interleaved").records[0]["images"] if i is not None)
    world_first = next(i for i in docs[0]["images"] if i is not None)
    assert np.array_equal(mixed.images()[first], np.asarray(Image.fromarray(world.images("train")[world_first]).resize(
        (160, 160), Image.Resampling.BICUBIC)))  # a document still shows its own image


def test_run_image_size_is_the_largest_encoder_input():
    from tests.test_corpus import compose_micro

    assert run_image_size(compose_micro(["resolution=64", "connector=c_abstractor"])) == 64
    assert run_image_size(compose_micro(["resolution=64", "hr_resolution=96", "connector=mining"])) == 96
    assert run_image_size(compose_micro(["resolution=224", "hr_resolution=96", "connector=mining"])) == 224
