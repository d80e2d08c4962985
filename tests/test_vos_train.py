"""STCN / IMSFR training (spec/vos.md 4): the bootstrapped CE against numpy, the official 3-frame rule and the
max-skip curriculum, seeded augmentations, the two-object selector and classes, real steps lowering the loss (both
networks, both stages) and a SIGKILLed run resuming to the uninterrupted weights. Tiny sizes: 32 px crops, batch 1."""
import json
import os

import numpy as np
import paddle
import pytest

import config
import train
from conftest import kill_and_resume
from dataset import vos_clips
from dataset.vos_clips import DEFAULT_SCHEDULE, ClipCollate, CurriculumSampler, StaticClips, VideoClips, \
    class_map, frame_indices, max_skip_at, parse_schedule, pick_objects, static_listing, video_listing
from tools import make_synthetic_data
from training.loader import load_batch
from training.loop import train_step
from training.vos import top_share, vos_loss
from utils.checkpoint import read_card
from utils.io import read_labels, write_image

SIZE = 32


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp('davis')
    make_synthetic_data.main(['--layout', 'davis', '--out', str(root), '--num-train', '6', '--num-valid', '2',
                              '--frames', '12', '--size', '96'])
    return root


@pytest.fixture(scope='module')
def static(davis, tmp_path_factory):
    """Static image / mask pairs (FSS-1000 style class folders) from the generated frames: the mask of object 1."""
    root = tmp_path_factory.mktemp('static')
    for i, video in enumerate(video_listing(str(davis), 'train')[:3]):
        jpg, png = video.frames[0]
        os.makedirs(root / f'class{i}')
        os.link(jpg, root / f'class{i}' / 'a.jpg')
        write_image(str(root / f'class{i}' / 'a.png'), np.repeat((read_labels(png) == 1)[..., None], 3, axis=2) * 1.0)
    return root


# ---------------------------------------------------------------- loss

def bootstrapped_numpy(logits, classes, second, share):
    """LossComputer + BootstrappedCE of the official losses.py, per clip (2 classes without a second object)."""
    total = 0
    for j in range(len(logits)):
        x = logits[j] if second[j] > 0.5 else logits[j, :2]
        x = x - x.max(axis=0)
        logp = x - np.log(np.exp(x).sum(axis=0))
        ce = -np.take_along_axis(logp, classes[j][None], axis=0).ravel()
        total += (ce.mean() if share >= 1 else np.sort(ce)[::-1][:int(ce.size * share)].mean()) / len(logits)
    return total


@pytest.mark.parametrize('step, share', [(0, 1.0), (19999, 1.0), (20000, 1.0), (45000, 0.575), (70000, 0.15),
                                         (90000, 0.15)])
def test_bootstrapped_ce_against_numpy_before_during_and_after_the_warm_up(step, share):
    rng = np.random.default_rng(step)
    logits = [rng.normal(0, 3, (3, 3, 8, 10)).astype(np.float32) for _ in range(2)]
    selector = np.array([[1, 1], [1, 0], [1, 1]], np.float32)
    classes = rng.integers(0, 3, (3, 3, 8, 10))
    classes[1][classes[1] == 2] = 1                   # the clip without a second object has none of its pixels
    assert top_share(step, 20000, 70000, 0.15) == pytest.approx(share)
    total, terms = vos_loss([paddle.to_tensor(x) for x in logits], paddle.to_tensor(classes),
                            paddle.to_tensor(selector), share)
    expected = [bootstrapped_numpy(logits[i - 1], classes[:, i], selector[:, 1], share) for i in (1, 2)]
    assert float(terms['ce_1']) == pytest.approx(expected[0], rel=1e-5)
    assert float(terms['ce_2']) == pytest.approx(expected[1], rel=1e-5)
    assert float(total) == pytest.approx(sum(expected), rel=1e-5)


# ---------------------------------------------------------------- frames, curriculum, objects

def official_indices(rng, n, max_skip):
    """The rule of STCN's vos_dataset.py, with the same draws from a numpy Generator."""
    this_max_jump = min(n, max_skip)
    start_idx = rng.integers(n - this_max_jump + 1)
    f1_idx = start_idx + rng.integers(this_max_jump + 1) + 1
    f1_idx = min(f1_idx, n - this_max_jump, n - 1)
    f2_idx = f1_idx + rng.integers(this_max_jump + 1) + 1
    f2_idx = min(f2_idx, n - this_max_jump // 2, n - 1)
    frames_idx = [start_idx, f1_idx, f2_idx]
    return frames_idx[::-1] if rng.random() < 0.5 else frames_idx


def test_three_frame_rule_and_the_max_skip_curriculum(monkeypatch):
    reversed_ = 0
    for seed in range(300):
        n, skip = 3 + seed % 40, (5, 10, 25, 1)[seed % 4]
        got = frame_indices(np.random.default_rng(seed), n, skip)
        assert got == official_indices(np.random.default_rng(seed), n, skip)
        forward = got if got[0] <= got[2] else got[::-1]
        reversed_ += forward is not got
        assert 0 <= forward[0] <= forward[1] <= forward[2] <= n - 1
        assert forward[1] - forward[0] <= min(n, skip) + 1 and forward[2] - forward[1] <= min(n, skip) + 1
    assert 100 < reversed_ < 200
    schedule = parse_schedule(DEFAULT_SCHEDULE)
    assert [max_skip_at(schedule, s, 1000) for s in (0, 99, 100, 199, 200, 300, 450, 899, 900, 999)] == \
        [5, 5, 10, 10, 15, 20, 25, 25, 5, 5]
    with pytest.raises(ValueError, match='max-skip-schedule'):
        parse_schedule('0.1:5,0.2:10')
    sampler = CurriculumSampler(10, 2, schedule, total=50)
    sampler.set_position(3, 2)           # resumed mid-epoch: steps 17..19 of 5 per epoch
    keys = list(sampler)
    assert [b[0][2:] for b in keys] == [(17, 20), (18, 20), (19, 20)] and all(k[0] == 3 for b in keys for k in b)
    seen = []                            # YouTube-VOS (every 5th frame there): skip // 5
    monkeypatch.setattr(vos_clips, 'frame_indices', lambda rng, n, skip: seen.append(skip) or [0, 1, 2])
    monkeypatch.setattr(vos_clips, 'augment_video_clip', lambda rng, im, lab, size: (np.zeros((3, 2, 2, 3)),
                                                                                     np.ones((3, 2, 2), np.uint8)))
    monkeypatch.setattr(vos_clips, 'read_image', lambda path: None)
    monkeypatch.setattr(vos_clips, 'read_labels', lambda path: None)
    videos = [vos_clips.Video('d', (('a', 'b'),) * 3, 1), vos_clips.Video('y', (('a', 'b'),) * 3, 5)]
    for i in (0, 1):
        VideoClips(videos, 2)[(0, i, 0, 25)]
    assert seen == [25, 5]


def test_objects_selector_and_classes():
    labels = np.zeros((3, 4, 4), np.uint8)
    labels[0, 0, :2], labels[0, 1, :2] = 3, 5
    picks = {pick_objects(np.random.default_rng(s), labels) for s in range(20)}
    assert picks == {(3, 5), (5, 3)}
    assert pick_objects(np.random.default_rng(0), np.zeros((3, 4, 4), np.uint8)) is None
    labels[0, 1, :2] = 0
    assert pick_objects(np.random.default_rng(0), labels) == (3, None)
    masks = np.zeros((3, 2, 2, 2), np.float32)
    masks[:, 0, 0] = 1
    masks[:, 1, :, 0] = 1                # overlapping pixel: the second object wins, as in the official
    np.testing.assert_array_equal(class_map(masks)[0], [[2, 1], [2, 0]])


def test_augmentation_is_seeded_and_samples_carry_the_objects(davis, static):
    clips = VideoClips(video_listing(str(davis), 'train'), SIZE, seed=3)
    a, b, c = clips[(0, 1, 0, 5)], clips[(0, 1, 7, 25)], clips[(1, 1, 0, 5)]
    assert a.images.shape == (3, SIZE, SIZE, 3) and a.masks.shape == (3, 2, SIZE, SIZE) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images, clips[(0, 1, 0, 5)].images)     # a function of (seed, epoch, index)
    assert not np.array_equal(a.images, c.images) and b.key == (0, 1, 7, 25)
    assert 0 <= a.images.min() and a.images.max() <= 1
    seconds = 0
    for i in range(len(clips)):
        s = clips[(0, i, 0, 10)]
        assert set(np.unique(s.masks)) <= {0, 1} and not (s.masks[:, 0] * s.masks[:, 1]).any()
        assert s.masks[0, 0].any()                                            # the target is in frame 0
        assert s.selector[0] == 1 and s.selector[1] == s.masks[:, 1].any()
        seconds += int(s.selector[1])
    assert 0 < seconds < len(clips)      # the generated videos have 1 to 3 objects
    batch = ClipCollate(2)([clips[(0, i, 4, 10)] for i in range(3)])
    frames, masks, selector, classes, step = batch
    assert frames.shape == (3, 3, 3, SIZE, SIZE) and masks.shape == (3, 3, 2, SIZE, SIZE) and list(step) == [4] * 3
    np.testing.assert_array_equal(classes == 1, masks[:, :, 0] > 0.5)
    np.testing.assert_array_equal(classes == 2, masks[:, :, 1] > 0.5)
    still = StaticClips(static_listing(str(static)), SIZE, seed=3)
    s, t = still[(0, 0, 0, 5)], still[(0, 0, 0, 5)]
    np.testing.assert_array_equal(s.images, t.images)
    assert s.masks.shape == (3, 2, SIZE, SIZE) and not s.masks[:, 1].any() and list(s.selector) == [1, 0]
    assert not np.array_equal(s.images[0], s.images[1])                       # three different deformations
    one = ClipCollate(1)([s])
    assert one[1].shape == (1, 3, 1, SIZE, SIZE) and one[2].shape == (1, 1) and one[3].max() <= 1


def test_unreadable_video_is_replaced_by_the_next(davis, tmp_path):
    videos = video_listing(str(davis), 'train')
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    bad = vos_clips.Video('bad', tuple((str(broken), p) for _, p in videos[0].frames), 1)
    sample = VideoClips([bad] + videos[1:], SIZE)[(0, 0, 0, 5)]
    assert len(sample.problems) == 1 and 'broken.jpg' in sample.problems[0]


# ---------------------------------------------------------------- training

def vos_args(davis, static, out, *extra):
    table = {'vos': {'root': str(davis), 'train': '.', 'valid': '.'}, 'still': {'root': str(static), 'train': '.'}}
    (out / 'datasets.json').write_text(json.dumps(table))
    return ['--dataset-config', str(out / 'datasets.json'), '--dataset-name', 'vos', '--resolution', str(SIZE),
            '--batch-size', '1', '--num-workers', '0', '--device', 'cpu', '--checkpoint-dir', str(out / 'ck'),
            '--log-dir', str(out / 'log'), '--valid-samples', '1', *extra]


@pytest.mark.parametrize('model_type, stage', [('stcn', 'main'), ('imsfr', 'static')])
def test_real_steps_lower_the_loss_on_a_fixed_batch(davis, static, tmp_path, model_type, stage):
    extra = ['--dataset-name', 'still', '--valid-dataset-name', 'vos'] if stage == 'static' else []
    args = train.parser().parse_args(vos_args(davis, static, tmp_path, '--model-type', model_type, '--stage', stage,
                                              '--model-backbone', 'resnet50' if model_type == 'stcn' else 'resnet101',
                                              *extra))
    model = config.resolve_model(args, read_card, demo=False)
    data, run, options = config.resolve_train(args, model)
    task = model.spec.trainer(model_type)
    train_set, sampler, collate, valid, note = task.datasets(data, run, options, 0, 1)
    assert valid is not None and 'no validation' not in note        # stage 0 validates on the video clips
    keys = next(iter(sampler))
    arrays = load_batch(train_set, collate, keys)[0]
    k = 1 if stage == 'static' else 2
    assert arrays[1].shape == (1, 3, k, SIZE, SIZE) and arrays[2].shape == (1, k)
    paddle.seed(0)
    network = model.spec.build(model)
    task.initialise(network)
    optimizer = task.optimizer(network, options)
    task.train_mode(network, True, options)
    losses = [train_step(task, network, optimizer, None, [paddle.to_tensor(a) for a in arrays], options)
              for _ in range(3)]
    assert all(np.isfinite(loss) for loss, _ in losses) and losses[-1][0] < 0.8 * losses[0][0], losses
    assert set(losses[0][1]) == {'ce_1', 'ce_2', 'p', 'iou'} and not network.training   # BN frozen: eval mode
    metrics = task.validate(network, [load_batch(valid[0], valid[2], valid[1][0])[0]])
    assert set(metrics) == {'loss', 'J'} and 0 <= metrics['J'] <= 1
    grid = task.image_grid(network, [paddle.to_tensor(a) for a in arrays])
    assert grid.shape == (3 * SIZE, 3 * SIZE, 3) and grid.dtype == np.uint8


def state_dict(path):
    return {k: np.asarray(v) for k, v in paddle.load(path).items()}


def test_killed_run_resumes_to_the_uninterrupted_weights(davis, static, tmp_path):
    common = vos_args(davis, static, tmp_path, '--model-type', 'stcn', '--max-steps', '4', '--checkpoint-interval',
                      '2', '--keep-checkpoints', '10', '--valid-interval', '1000', '--lr', '1e-4',
                      '--lr-steps', '3', '--ce-warm-start', '1', '--ce-warm-end', '3', '--max-skip-schedule',
                      '0:2,0.5:4', '--resume')
    whole, _ = kill_and_resume(train.main, common, tmp_path)
    start = state_dict(str(tmp_path / 'ck' / 'whole' / 'step-0000002.pdparams'))
    name = 'key_encoder.bn1._mean'
    assert np.abs(start[name]).max() > 0 and np.array_equal(start[name], whole[name])   # set at step 0, then frozen
    assert not np.allclose(start['decoder.pred.weight'], whole['decoder.pred.weight'])
    state = json.loads((tmp_path / 'ck' / 'killed' / 'step-0000004.json').read_text())
    assert (state['step'], state['epoch'], state['batch']) == (4, 0, 4)          # mid-epoch: 6 clips per epoch
    log = (tmp_path / 'log' / 'killed' / 'train.log').read_text()
    assert 'resumed' in log and 'valid step 4: loss' in log
