"""Dataset layouts, pairing errors, config roots, augmentation determinism, sampler and collate."""
import json
import os

import numpy as np
import pytest

from dataset.augmentation import augment_background, augment_pair, color_jitter, composite_augment, draw_batch_params, \
    eval_composite, perturb_plate
from dataset.config import load_roots, matting_split, split_dir
from dataset.folders import find_pairs, image_files, matting_pairs, read_pair
from dataset.matting import MAX_SUBSTITUTES, Collate, EpochSampler, MattingDataset
from tools import make_synthetic_data
from utils.io import write_image


def touch(path, shape=(8, 8), channels=3, value=0.5):
    write_image(str(path), np.full(shape + ((channels,) if channels > 1 else ()), value, np.float32))


def make_folder(root, fgr, pha, trimap=(), names=('fgr', 'pha', 'trimap')):
    for folder, files in zip(names, (fgr, pha, trimap)):
        for f in files:
            touch(root / folder / f, channels=3 if folder == names[0] else 1)
    return str(root)


def test_pairs_by_name_across_extensions_and_with_trimaps(tmp_path):
    root = make_folder(tmp_path, ['b.jpg', 'a.png'], ['a.png', 'b.png'], ['a.png', 'b.png'])
    pairs = matting_pairs(root)
    assert [tuple(os.path.relpath(p, root) for p in pair) for pair in pairs] == [
        ('fgr/a.png', 'pha/a.png', 'trimap/a.png'), ('fgr/b.jpg', 'pha/b.png', 'trimap/b.png')]


def test_unpaired_files_are_listed(tmp_path):
    root = make_folder(tmp_path, ['a.png', 'b.png', 'x.png'], ['a.png', 'b.png', 'y.png'])
    with pytest.raises(ValueError) as e:
        matting_pairs(root)
    assert 'x' in str(e.value) and 'y' in str(e.value) and root in str(e.value)


def test_missing_trimap_and_duplicate_names_are_errors(tmp_path):
    root = make_folder(tmp_path / 'one', ['a.png', 'b.png'], ['a.png', 'b.png'], ['a.png'])
    with pytest.raises(ValueError, match=r'fgr/b\.png has no partner in trimap/'):
        matting_pairs(root)
    root = make_folder(tmp_path / 'two', ['a.png', 'a.jpg'], ['a.png'])
    with pytest.raises(ValueError, match='same name'):
        matting_pairs(root)
    with pytest.raises(ValueError, match='not found'):
        matting_pairs(str(tmp_path / 'nothing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images'):
        image_files(str(tmp_path / 'empty'))


def test_real_layouts(tmp_path):
    # VideoMatte240K: clips of frames
    vm = tmp_path / 'vm' / 'train'
    make_folder(vm, ['c0/00000.jpg', 'c0/00001.jpg', 'c1/00000.jpg'], ['c0/00000.jpg', 'c0/00001.jpg', 'c1/00000.jpg'])
    assert [os.path.relpath(p[1], vm) for p in find_pairs(str(vm))] == \
        ['pha/c0/00000.jpg', 'pha/c0/00001.jpg', 'pha/c1/00000.jpg']
    # Adobe: two matting folders side by side, fg/alpha names
    adobe = tmp_path / 'adobe' / 'Training_set'
    make_folder(adobe / 'Adobe-licensed images', ['a.jpg'], ['a.jpg'], names=('fg', 'alpha', 'trimaps'))
    make_folder(adobe / 'Other', ['o.jpg'], ['o.png'], names=('fg', 'alpha', 'trimaps'))
    assert [os.path.basename(p[0]) for p in find_pairs(str(adobe))] == ['a.jpg', 'o.jpg']
    # Distinctions-646 (FG/GT) and AIM-500 (original/mask/trimap)
    make_folder(tmp_path / 'd646' / 'Train', ['x.png'], ['x.png'], names=('FG', 'GT', 'trimap'))
    assert len(find_pairs(str(tmp_path / 'd646' / 'Train'))) == 1
    aim = make_folder(tmp_path / 'aim', ['p_1.jpg'], ['p_1.png'], ['p_1.png'], names=('original', 'mask', 'trimap'))
    assert find_pairs(aim)[0][2].endswith('trimap/p_1.png')
    # PhotoMatte85: RGBA files; the matte is the alpha channel
    rgba = np.zeros((6, 5, 4), np.float32)
    rgba[..., :3], rgba[2:, :, 3] = 0.25, 1
    write_image(str(tmp_path / 'pm85' / 'p.png'), rgba)
    (fgr, pha, _), = find_pairs(str(tmp_path / 'pm85'))
    f, a = read_pair(fgr, pha)
    assert f.shape == (6, 5, 3) and a[:2].max() == 0 and a[2:].min() == 1
    touch(tmp_path / 'rgb' / 'p.png')
    with pytest.raises(ValueError, match='no alpha channel'):
        read_pair(*find_pairs(str(tmp_path / 'rgb'))[0][:2])


def test_mismatched_sizes_name_both_files(tmp_path):
    touch(tmp_path / 'fgr' / 'a.png', (8, 8))
    touch(tmp_path / 'pha' / 'a.png', (8, 9), channels=1)
    (fgr, pha, _), = matting_pairs(str(tmp_path))
    with pytest.raises(ValueError, match=r'a\.png.*8x8.*9x8'):
        read_pair(fgr, pha)


def test_config_roots_and_errors(tmp_path):
    config = tmp_path / 'datasets.json'
    config.write_text(json.dumps({'distinction': {'root': str(tmp_path / 'D646'), 'train': 'Train', 'valid': 'Test'}}))
    roots = load_roots(str(config))
    with pytest.raises(ValueError) as e:
        split_dir(roots, 'distinction', 'train')
    assert 'distinction' in str(e.value) and os.path.join('D646', 'Train') in str(e.value)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        split_dir(roots, 'nope', 'train')
    make_folder(tmp_path / 'elsewhere' / 'Train', ['a.png'], ['a.png'])
    roots = load_roots(str(config), [f"distinction={tmp_path / 'elsewhere'}"])
    assert len(matting_split(roots, 'distinction', 'train')) == 1
    with pytest.raises(ValueError, match='NAME=PATH'):
        load_roots(str(config), ['distinction'])
    # the shipped config knows the official names and the demo set is readable
    shipped = load_roots()
    assert {'videomatte240k', 'photomatte13k', 'distinction', 'adobe', 'backgrounds'} <= set(shipped)
    assert len(matting_split(shipped, 'demo', 'train')) == 11


def random_images(seed, size=(40, 50)):
    rng = np.random.default_rng(seed)
    return (rng.random(size + (3,), dtype=np.float32), rng.random(size, dtype=np.float32),
            rng.random(size + (3,), dtype=np.float32))


def test_augmentation_is_a_function_of_the_seed():
    fgr, pha, bgr = random_images(0)
    a = augment_pair(fgr, pha, (32, 24), np.random.default_rng(5), (0.4, 1)) + \
        (augment_background(bgr, (32, 24), np.random.default_rng(5)),)
    b = augment_pair(fgr, pha, (32, 24), np.random.default_rng(5), (0.4, 1)) + \
        (augment_background(bgr, (32, 24), np.random.default_rng(5)),)
    c = augment_pair(fgr, pha, (32, 24), np.random.default_rng(6), (0.4, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (32, 24, 3) and a[1].shape == (32, 24) and a[2].shape == (32, 24, 3)
    assert all(x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1 for x in a)


def test_eval_composite_contract():
    fgr, pha, bgr = random_images(1)
    outs = [eval_composite(fgr, pha, bgr, np.random.default_rng(s)) for s in (3, 3, 4)]
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])
    assert not (np.array_equal(outs[0][0], outs[2][0]) and np.array_equal(outs[0][1], outs[2][1]))
    for src, bgr_aug in outs:
        assert src.dtype == bgr_aug.dtype == np.float32 and src.shape == bgr_aug.shape == fgr.shape
        assert 0 <= src.min() and src.max() <= 1 and 0 <= bgr_aug.min() and bgr_aug.max() <= 1
    # opaque pixels show the foreground (up to noise), clear ones the (shadowed) background
    pha = np.zeros_like(pha)
    pha[:, :10] = 1
    for s in range(5):
        src, _ = eval_composite(fgr, pha, bgr, np.random.default_rng(s))
        assert np.abs(src[:, :10] - fgr[:, :10]).mean() < 0.05
    with pytest.raises(ValueError, match='bgr of the fgr size'):
        eval_composite(fgr, pha, bgr[:20], np.random.default_rng(0))


def test_plain_composite_and_perturbed_plate():
    fgr, pha, bgr = random_images(1)
    src, plate = eval_composite(fgr, pha, bgr, np.random.default_rng(0), augment=False)
    np.testing.assert_allclose(src, fgr * pha[..., None] + bgr * (1 - pha[..., None]), atol=1e-6)
    assert np.array_equal(plate, bgr)
    assert perturb_plate(bgr, np.random.default_rng(0), 0, 0) is bgr
    # ramps in x (red) and y (green): the moved plate differs by the translation, whose length is the shift
    yy, xx = np.mgrid[0:40, 0:50].astype(np.float32) / 100
    ramps = np.stack([xx, yy, xx * 0], axis=2)
    for seed in range(3):
        moved = perturb_plate(ramps, np.random.default_rng(seed), 2.5, 0)
        d = (ramps - moved)[5:-5, 5:-5] * 100
        assert d[..., 0].std() < 1e-3 and d[..., 1].std() < 1e-3
        assert np.hypot(d[..., 0].mean(), d[..., 1].mean()) == pytest.approx(2.5, abs=1e-3)
    noisy = perturb_plate(bgr * 0 + 0.5, np.random.default_rng(1), 0, 0.05)
    assert abs(float((noisy - 0.5).std()) - 0.05) < 0.005 and noisy.dtype == np.float32


def test_kornia_brightness_is_additive():
    rng = np.random.default_rng(0)
    image = np.full((4, 4, 3), 0.5, np.float32)
    out = color_jitter(image, rng, 0.2, 0, 0, 0, kornia=True)
    factor = np.random.default_rng(0).uniform(0.8, 1.2)
    assert np.allclose(out, 0.5 + factor - 1, atol=1e-6)


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')
    make_synthetic_data.main(['--out', str(root), '--num-train', '5', '--num-valid', '1', '--num-backgrounds', '3',
                              '--size', '48'])
    return root


def test_dataset_sampler_and_collate_are_deterministic(tiny_set):
    pairs, bgrs = find_pairs(str(tiny_set / 'train')), image_files(str(tiny_set / 'backgrounds' / 'train'))
    ds = MattingDataset(pairs, bgrs, 32, train=True, seed=1)
    assert len(ds) == 5                                      # the shorter list cycles
    one = ds[(2, 3)]
    assert np.array_equal(one[1], ds[(2, 3)][1]) and not np.array_equal(one[1], ds[(3, 3)][1])
    sampler = EpochSampler(len(ds), 2, seed=1)
    sampler.set_position(4, 0)
    epoch4 = list(sampler)
    assert len(epoch4) == 2 and all(k[0] == 4 for b in epoch4 for k in b)
    sampler.set_position(4, 1)
    assert list(sampler) == epoch4[1:]                       # resuming mid-epoch continues the same order
    ranks = [EpochSampler(len(ds), 1, seed=1, rank=r, world=2) for r in range(2)]
    assert [len(s) for s in ranks] == [3, 3]
    seen = [k for s in ranks for b in s for k in b]
    assert {i for _, i in seen} == set(range(5))             # the ranks share the epoch out, wrap-padded
    collate = Collate(seed=1, augment=True, multiple=4)
    batch = [ds[k] for k in epoch4[0]]
    pha, fgr, src, bgr = collate(batch)
    assert pha.shape[1] == 1 and fgr.shape[1] == src.shape[1] == bgr.shape[1] == 3
    assert 16 <= pha.shape[2] < 32 and pha.shape[2] % 4 == 0 and pha.shape[3] % 4 == 0
    assert all(np.array_equal(x, y) for x, y in zip(collate(batch), (pha, fgr, src, bgr)))
    plain = Collate(augment=False)(batch)
    assert np.allclose(plain[2], plain[1] * plain[0] + plain[3] * (1 - plain[0]), atol=1e-6)
    # without the plate's colour jitter: the same crop and the same first composite (later draws move on)
    steady = Collate(seed=1, augment=True, multiple=4, plate_jitter=0)(batch)
    assert np.array_equal(steady[0], pha) and np.array_equal(steady[1], fgr) and np.array_equal(steady[2][0], src[0])


def test_plate_jitter_is_the_chance_of_the_plates_colour_change():
    fgr, pha, _ = random_images(2)
    bgr = np.full_like(fgr, 0.5) + np.float32(0.1) * random_images(3)[0]      # mid-grey, textured: no clipping
    shifts = {}
    for chance in (0.0, 1.0):
        shifts[chance] = []
        for seed in range(20):
            rng = np.random.default_rng(seed)
            _, plate = composite_augment(fgr, pha, bgr, rng, draw_batch_params(rng), plate_jitter=chance)
            shifts[chance].append(np.abs(plate.mean(axis=(0, 1)) - bgr.mean(axis=(0, 1))).max())
    assert max(shifts[0.0]) < 0.02                             # noise and a 1 % misalignment only
    assert sum(s > 0.02 for s in shifts[1.0]) >= 10             # brightness, contrast, saturation, hue


@pytest.mark.parametrize('layout', ['videomatte', 'aim', 'rgba'])
def test_generator_layouts_read_back(tmp_path, layout):
    make_synthetic_data.main(['--out', str(tmp_path), '--layout', layout, '--num-train', '2', '--num-valid', '1',
                              '--num-backgrounds', '1', '--size', '32', '--frames', '2'])
    split = tmp_path / 'train'
    pairs = find_pairs(str(split))
    assert len(pairs) == (4 if layout == 'videomatte' else 2)
    fgr, pha = read_pair(*pairs[0][:2])
    assert fgr.shape == (32, 32, 3) and 0 < pha.mean() < 1
    assert 0.01 < ((pha > 0.02) & (pha < 0.98)).mean()       # soft, hair-like edges
    assert (pairs[0][2] is not None) == (layout == 'aim')


def test_dataset_lists_weight_by_repetition():
    roots = load_roots()
    assert len(matting_split(roots, 'demo*3,demo', 'train')) == 4 * 11
    assert len(matting_split(roots, 'demo*3', 'valid', repeat=False)) == 3
    with pytest.raises(ValueError, match='NAME\\*K'):
        matting_split(roots, 'demo*x', 'train')


def test_unreadable_files_are_replaced_by_the_next_and_reported(tiny_set, tmp_path):
    pairs, bgrs = find_pairs(str(tiny_set / 'train')), image_files(str(tiny_set / 'backgrounds' / 'train'))
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    ds = MattingDataset([(str(broken), pairs[0][1], None)] + pairs, [str(broken)] + bgrs, 32, train=True, seed=1)
    sample = ds[(0, 0)]
    assert len(sample.problems) == 2 and all(str(broken) in p for p in sample.problems)
    good = MattingDataset(pairs, bgrs, 32, train=True, seed=1)[(0, 1)]
    assert np.array_equal(sample.fgr.shape, good.fgr.shape) and good.problems == ()
    hopeless = MattingDataset([(str(broken), str(broken), None)] * (MAX_SUBSTITUTES + 1), bgrs, 32, train=True)
    with pytest.raises(ValueError, match='in a row cannot be read.*broken.png'):
        hopeless[(0, 0)]
