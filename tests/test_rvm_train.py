"""RVM training (spec/rvm.md 2): losses against numpy versions of the official definitions, the augmentations'
determinism, the pass alternation, the readers of the real layouts, and a killed run resuming mid-epoch to the
uninterrupted weights."""
import json
import os

import numpy as np
import paddle
import pytest

import config
import train
from conftest import kill_and_resume
from dataset.motion import CURVES, TRAIN_IMAGEMATTE, MotionAugmentation, augment_clip_segmentation, \
    augment_image_segmentation, ease
from dataset.segmentation import decode_rle, rle_string_counts, read_mask
from dataset.video_matting import VALID_CLIPS, videomatte_split
from tools import make_synthetic_data
from training.loader import load_batch
from dataset.passes import StepSampler
from utils.checkpoint import read_card
from utils.losses import rvm_matting_loss, rvm_segmentation_loss

RNG = np.random.default_rng(0)

# ---------------------------------------------------------------- losses: numpy versions of train_loss.py

KERNEL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256


def blur(x):
    """5x5 Gaussian, reflect padding 2, on N x H x W."""
    p = np.pad(x, ((0, 0), (2, 2), (2, 2)), mode='reflect')
    h, w = x.shape[1:]
    return sum(KERNEL[i, j] * p[:, i:i + h, j:j + w] for i in range(5) for j in range(5))


def laplacian_numpy(pred, true, levels=5):
    loss = 0
    for level in range(levels):
        pyramids = []
        for x in (pred, true):
            x = x[:, :x.shape[1] // 2 * 2, :x.shape[2] // 2 * 2]
            down = blur(x)[:, ::2, ::2]
            up = np.zeros(x.shape)
            up[:, ::2, ::2] = down * 4
            pyramids.append((x - blur(up), down))
        loss += 2 ** level * np.abs(pyramids[0][0] - pyramids[1][0]).mean()
        pred, true = pyramids[0][1], pyramids[1][1]
    return loss / levels


def matting_loss_numpy(fgr, pha, true_fgr, true_pha):
    mask = true_pha > 0
    f, tf = fgr * mask, true_fgr * mask
    coherence = lambda a, b: 5 * (((a[:, 1:] - a[:, :-1]) - (b[:, 1:] - b[:, :-1])) ** 2).mean()   # noqa: E731
    terms = {'pha_l1': np.abs(pha - true_pha).mean(),
             'pha_laplacian': laplacian_numpy(pha.reshape(-1, *pha.shape[3:]), true_pha.reshape(-1, *pha.shape[3:])),
             'pha_coherence': coherence(pha, true_pha),
             'fgr_l1': np.abs(f - tf).mean(), 'fgr_coherence': coherence(f, tf)}
    return sum(terms.values()), terms


def test_matting_loss_matches_the_official_definitions():
    b, t, h, w = 2, 3, 96, 64          # 5 full levels (the official reflect padding needs >= 4 px at the last)
    true_pha = np.clip(RNG.random((b, t, 1, h, w)) * 1.6 - 0.3, 0, 1).astype(np.float32)    # zeros included
    pha, fgr, true_fgr = (RNG.random(s).astype(np.float32) for s in ((b, t, 1, h, w), (b, t, 3, h, w), (b, t, 3, h, w)))
    total, terms = rvm_matting_loss(*(paddle.to_tensor(x) for x in (fgr, pha, true_fgr, true_pha)))
    ref_total, ref_terms = matting_loss_numpy(fgr, pha, true_fgr, true_pha)
    assert set(terms) == set(ref_terms)
    for k in terms:
        assert float(terms[k]) == pytest.approx(ref_terms[k], rel=2e-5), k
    assert float(total) == pytest.approx(ref_total, rel=2e-5)
    same = rvm_matting_loss(*(paddle.to_tensor(x) for x in (true_fgr, true_pha, true_fgr, true_pha)))[0]
    assert float(same) == 0


def test_segmentation_loss_is_binary_cross_entropy_of_logits():
    logits, target = RNG.normal(0, 3, (2, 3, 1, 8, 8)).astype(np.float32), (RNG.random((2, 3, 1, 8, 8)) > 0.5)
    expected = np.mean(np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits))))
    total, terms = rvm_segmentation_loss(paddle.to_tensor(logits), paddle.to_tensor(target.astype(np.float32)))
    assert float(total) == pytest.approx(expected, rel=1e-5) and set(terms) == {'bce'}


# ---------------------------------------------------------------- augmentation

def clips(t=5, h=70, w=90):
    rng = np.random.default_rng(1)
    return (rng.random((t, h, w, 3), dtype=np.float32), rng.random((t, h, w, 1), dtype=np.float32),
            rng.random((t, h + 10, w + 20, 3), dtype=np.float32))


def test_easing_curves_run_from_0_to_1():
    assert len(CURVES) == 31          # 10 families x in/out/inout + the step
    for curve, mode in CURVES:
        assert abs(ease(curve, mode, 0.0)) < 1e-3 and abs(ease(curve, mode, 1.0) - 1) < 1e-3, (curve, mode)


@pytest.mark.parametrize('probabilities', [TRAIN_IMAGEMATTE, (1,) * 9])
def test_motion_augmentation_is_a_function_of_the_seed(probabilities):
    augment = MotionAugmentation(48, *probabilities)
    a = augment(*clips(), np.random.default_rng(5))
    b = augment(*clips(), np.random.default_rng(5))
    c = augment(*clips(), np.random.default_rng(6))
    assert [x.shape for x in a] == [(5, 48, 48, 3), (5, 48, 48, 1), (5, 48, 48, 3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    assert all(x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1 for x in a)


def test_motion_pause_repeats_a_frame():
    frames = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) * np.ones((6, 4, 4, 1), np.float32)
    for seed in range(20):
        out, = MotionAugmentation.motion_pause(np.random.default_rng(seed), frames)
        values = out[:, 0, 0, 0]
        assert values[0] == 0 and np.all(np.diff(values) >= 0) and set(values) <= set(range(6))
        paused = np.flatnonzero(np.diff(values) == 0)
        if len(paused):     # the frames after the paused one repeat it, then the clip goes on where it was
            assert np.all(values[paused[-1] + 2:] == np.arange(paused[-1] + 2, 6))


def test_segmentation_augmentations_keep_masks_binary_and_are_seeded():
    rng = np.random.default_rng(2)
    img, seg = rng.random((60, 80, 3), dtype=np.float32), (rng.random((60, 80, 1)) > 0.5).astype(np.float32)
    a = augment_image_segmentation(img, seg, 32, np.random.default_rng(3))
    b = augment_image_segmentation(img, seg, 32, np.random.default_rng(3))
    assert a[0].shape == (32, 32, 3) and a[1].shape == (32, 32, 1) and set(np.unique(a[1])) <= {0, 1}
    np.testing.assert_array_equal(a[0], b[0])
    imgs, segs = augment_clip_segmentation(np.stack([img] * 4), np.stack([seg] * 4), 32, np.random.default_rng(4))
    assert imgs.shape == (4, 32, 32, 3) and segs.shape == (4, 32, 32, 1)
    np.testing.assert_array_equal(imgs[0], imgs[3])       # one draw for the whole clip


# ---------------------------------------------------------------- readers

def test_rle_decoding_column_major_and_compressed():
    mask = (RNG.random((7, 5)) > 0.6).astype(np.uint8)
    rle = make_synthetic_data.rle(mask)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    # pycocotools 2.0 mask.encode of this mask (a 4 x 27 block and a 1 x 3 bar in 6 x 40)
    expected = np.zeros((6, 40), np.uint8)
    expected[1:5, 3:30], expected[2, 35:38] = 1, 1
    coco = 'c042000000000000000000000000000000000000000000000000000o0MTO000:'
    np.testing.assert_array_equal(decode_rle({'size': [6, 40], 'counts': coco}), expected)
    assert rle_string_counts(encode_counts([5, 100, 2, 70, 1])) == [5, 100, 2, 70, 1]


def encode_counts(counts):
    """pycocotools' rleToString: differences two back from the third count on, 5-bit groups, +48."""
    out = []
    for i, x in enumerate(counts):
        x = x - counts[i - 2] if i > 2 else x
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = not ((c & 0x10 == 0 and x == 0) or (c & 0x10 and x == -1))
            out.append(chr(c + 48 + (0x20 if more else 0)))
    return ''.join(out)


def test_panoptic_mask_keeps_person_backpack_and_tie_segments(tmp_path):
    ids = np.array([[0, 5, 5], [7, 7, 300], [70000, 5, 0]])
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    import cv2
    cv2.imwrite(str(tmp_path / 'p.png'), rgb[..., ::-1])
    mask = read_mask(str(tmp_path / 'p.png'), (5, 300, 70000))[..., 0]
    np.testing.assert_array_equal(mask, [[0, 1, 1], [0, 0, 1], [1, 1, 0]])


def test_videomatte_validation_clips_are_held_back(tmp_path):
    for clip in ('0000', '0001', '0100', '0250'):
        for part in ('fgr', 'pha'):
            folder = tmp_path / 'train' / part / clip
            folder.mkdir(parents=True)
            cv2_write(folder / '00000.png')
    train_clips = [os.path.basename(c) for c in videomatte_split(str(tmp_path / 'train'), 'train', False)]
    valid_clips = [os.path.basename(c) for c in videomatte_split(str(tmp_path / 'train'), 'valid', False)]
    assert train_clips == ['0001', '0250'] and valid_clips == ['0000', '0100'] and set(valid_clips) <= set(VALID_CLIPS)
    assert len(videomatte_split(str(tmp_path / 'train'), 'train', True)) == 4


def cv2_write(path):
    import cv2
    cv2.imwrite(str(path), np.full((4, 4, 3), 128, np.uint8))


# ---------------------------------------------------------------- passes and end to end

def test_segmentation_alternates_clips_and_images_and_ranks_share_nothing():
    streams = {'hr': 7, 'seg_clips': 5, 'seg_images': 30}
    ranks = [StepSampler(20, 2, streams, length=3, seed=1, rank=r, world=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_position(1, 0)
    steps = [list(s) for s in ranks]
    assert len(steps[0]) == 5
    for b, keys in enumerate(steps[0]):
        tags = [k[0] for k in keys]
        step = 1 * 5 + b
        assert tags[:2] == ['lr', 'lr'] and tags[2:4] == ['hr', 'hr']
        assert tags[4:] == (['seg_clips'] * 2 if step % 2 == 0 else ['seg_images'] * 6)
    for a, b in zip(*steps):        # the two ranks draw different items of every stream at every step
        assert not {k for k in a if k[0] != 'lr'} & {k for k in b if k[0] != 'lr'}
    again = StepSampler(20, 2, streams, length=3, seed=1, rank=0, world=2)
    again.set_position(1, 3)        # resumed at batch 3: the same keys as the uninterrupted epoch
    assert list(again) == steps[0][3:]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('rvm')
    make_synthetic_data.main(['--out', str(root), '--layout', 'rvm', '--num-train', '4', '--num-valid', '1',
                              '--frames', '6', '--size', '72'])
    return root


def rvm_args(data, out, *extra):
    """train.py arguments on the generated data, its roots in a dataset config as a user would write them."""
    roots = {'vm': ('videomatte', 'train', 'valid'), 'bgv': ('background_videos', 'train', 'valid'),
             'spd': ('supervisely', '.', None), 'vis': ('youtubevis', 'train', None)}
    table = {name: {'root': str(data / sub), 'train': tr, **({'valid': va} if va else {})}
             for name, (sub, tr, va) in roots.items()}
    (out / 'datasets.json').write_text(json.dumps(table))
    return ['--dataset-config', str(out / 'datasets.json'), '--model-type', 'rvm', '--dataset-name', 'vm',
            '--background-name', 'bgv', '--background-video-name', 'bgv', '--seg-image-names', 'spd',
            '--seg-clip-name', 'vis', '--resolution', '64', '--seq-length-lr', '3', '--num-workers', '0',
            '--device', 'cpu', '--checkpoint-dir', str(out / 'ck'), '--log-dir', str(out / 'log'),
            '--valid-samples', '1', '--epochs', '100', *extra]


def test_one_step_has_the_three_passes(data, tmp_path):
    args = train.parser().parse_args(rvm_args(data, tmp_path, '--train-hr', '--resolution-hr', '96',
                                              '--seq-length-hr', '2', '--batch-size', '2'))
    model = config.resolve_model(args, read_card, demo=False)
    data_cfg, run, options = config.resolve_train(args, model)
    task = model.spec.trainer('rvm')
    train_set, sampler, collate, valid, note = task.datasets(data_cfg, run, options, 0, 1)
    assert not note and valid is not None
    batches = iter(sampler)
    for step in range(2):
        arrays = load_batch(train_set, collate, next(batches))[0]
        passes = task.passes([paddle.to_tensor(a) for a in arrays], options)
        assert [p for p, _ in passes] == ['lr_', 'hr_', 'seg_']
        lr, hr, seg = (p for _, p in passes)
        assert lr.src.shape[:3] == [2, 3, 3] and 32 <= lr.src.shape[3] < 64 and hr.src.shape[1] == 2
        assert 48 <= hr.src.shape[3] < 96 and hr.ratio == 0.25 and lr.ratio == 1
        assert seg.img.shape[:2] == ([2, 3] if step % 2 == 0 else [6, 1])       # clips, then one-frame images
        assert 0 <= float(seg.seg.min()) and float(seg.seg.max()) <= 1 and float(seg.seg.max()) > 0


def state_dict(path):
    return {k: np.asarray(v) for k, v in paddle.load(path).items()}


def test_killed_run_resumes_mid_epoch_to_the_uninterrupted_state(data, tmp_path):
    common = rvm_args(data, tmp_path, '--train-hr', '--resolution-hr', '96', '--seq-length-hr', '2', '--max-steps',
                      '4', '--checkpoint-interval', '2', '--keep-checkpoints', '10', '--valid-interval', '1000',
                      '--lr-refiner', '2e-4', '--resume')
    _, whole = kill_and_resume(train.main, common, tmp_path)
    start = state_dict(str(tmp_path / 'ck' / 'whole' / 'step-0000002.pdparams'))
    assert not np.allclose(start['refiner.box_filter.weight'], whole['refiner.box_filter.weight'])   # HR pass
    state = json.loads((tmp_path / 'ck' / 'killed' / 'step-0000004.json').read_text())
    assert (state['step'], state['epoch'], state['batch']) == (4, 0, 4)          # mid-epoch: 8 clips per epoch
