"""predict.py end to end on small generated inputs: files, sizes, values, pairing, videos and bad input."""
import os

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

import predict
from conftest import build_model
from utils.alignment import align_background
from utils.io import VideoReader, read_alpha, read_image, write_image, yuv420


def random_weights(tmp_path_factory, model_type, backbone, seed):
    paddle.seed(seed)
    path = str(tmp_path_factory.mktemp(model_type) / 'random.pdparams')
    paddle.save(build_model(model_type, backbone).state_dict(), path)
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Random weights whose error map is not zero everywhere, so the refiner has work."""
    return random_weights(tmp_path_factory, 'mattingrefine', 'mobilenetv2', seed=7)


def textured(h, w, seed):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((h // 8 + 2, w // 8 + 2, 3), dtype=np.float32), (w, h))
    return np.clip(base + 0.05 * rng.random((h, w, 3), dtype=np.float32), 0, 1)


def pair(h, w, seed=0):
    bgr = textured(h, w, seed)
    src = bgr.copy()
    src[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = [0.9, 0.2, 0.3]
    return src, bgr


def run(checkpoint, *argv):
    return predict.main(['--model-checkpoint', checkpoint, '--device', 'cpu', *argv])


def test_single_pair_any_size_matches_direct_model_call(tmp_path, checkpoint):
    src, bgr = pair(70, 90)                                   # not a multiple of 4
    write_image(str(tmp_path / 'a.png'), src)
    write_image(str(tmp_path / 'plate.png'), bgr)
    out = tmp_path / 'out'
    assert run(checkpoint, '--src', str(tmp_path / 'a.png'), '--bgr', str(tmp_path / 'plate.png'),
               '--output-dir', str(out), '--output-types', 'com', 'pha', 'fgr', 'err', 'ref',
               '--model-refine-mode', 'full') == 0
    com = cv2.imread(str(out / 'com' / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert com.shape == (70, 90, 4)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out / 'com' / 'a.png').st_mode & 0o777 == 0o666 & ~umask     # not mkstemp's private 0600
    for t in ('pha', 'err', 'ref'):
        assert read_alpha(str(out / t / 'a.png')).shape == (70, 90)
    pha = read_alpha(str(out / 'pha' / 'a.png'))
    # the same network called directly on the edge-padded input
    model = build_model('mattingrefine', 'mobilenetv2', refine_mode='full')
    model.set_state_dict(paddle.load(checkpoint))
    model.eval()
    pad = lambda a: paddle.to_tensor(np.pad(read_image(str(tmp_path / a)), ((0, 2), (0, 2), (0, 0)), mode='edge')
                                     .transpose(2, 0, 1)[None].copy())
    with paddle.no_grad():
        expected = model(pad('a.png'), pad('plate.png'))[0].numpy()[0, 0, :70, :90]
    assert np.abs(pha - expected).max() <= 1 / 255 + 1e-6
    assert 0 <= pha.min() and pha.max() <= 1 and pha.std() > 0


def test_folders_pair_by_relative_name_and_mirror_the_tree(tmp_path, checkpoint):
    for rel, seed in (('x/one', 1), ('x/y/two', 2)):
        src, bgr = pair(64, 48, seed)
        write_image(str(tmp_path / 'src' / f'{rel}_src.jpg'), src)
        write_image(str(tmp_path / 'bgr' / f'{rel}_bgr.png'), bgr)
    out = tmp_path / 'out'
    assert run(checkpoint, '--src', str(tmp_path / 'src'), '--bgr', str(tmp_path / 'bgr'), '--output-dir',
               str(out), '--batch-size', '2') == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*.png')) == sorted(
        f'{t}/{rel}.png' for t in ('com', 'pha', 'fgr') for rel in ('x/one', 'x/y/two'))


def test_unpaired_files_are_listed(tmp_path, checkpoint, capsys):
    src, bgr = pair(32, 32)
    write_image(str(tmp_path / 'src' / 'a.png'), src)
    write_image(str(tmp_path / 'src' / 'b.png'), src)
    write_image(str(tmp_path / 'bgr' / 'a.png'), bgr)
    with pytest.raises(SystemExit) as e:
        run(checkpoint, '--src', str(tmp_path / 'src'), '--bgr', str(tmp_path / 'bgr'), '--output-dir',
            str(tmp_path / 'out'))
    assert 'b.png has no partner in' in str(e.value) and 'a.png' not in str(e.value)


def test_bad_inputs_are_named_and_skipped_or_fatal_with_strict(tmp_path, checkpoint, capsys):
    src, bgr = pair(48, 64)
    write_image(str(tmp_path / 'src' / 'good.png'), src)
    write_image(str(tmp_path / 'bgr' / 'good.png'), bgr)
    (tmp_path / 'src' / 'broken.png').write_bytes(b'not a png at all')
    write_image(str(tmp_path / 'bgr' / 'broken.png'), bgr)
    write_image(str(tmp_path / 'src' / 'small.png'), src)
    write_image(str(tmp_path / 'bgr' / 'small.png'), bgr[:40])
    out = tmp_path / 'out'
    args = ['--src', str(tmp_path / 'src'), '--bgr', str(tmp_path / 'bgr'), '--output-dir', str(out)]
    assert run(checkpoint, *args) == 0
    err = capsys.readouterr().err
    assert 'broken.png: not a readable image' in err
    assert 'small.png: plate is 64x40' in err
    assert (out / 'pha' / 'good.png').exists() and not (out / 'pha' / 'broken.png').exists()
    with pytest.raises(SystemExit) as e:
        run(checkpoint, *args, '--strict', '-y')
    assert 'broken.png' in str(e.value)
    with pytest.raises(SystemExit) as e:
        run(checkpoint, '--src', str(tmp_path / 'missing'), '--bgr', str(tmp_path / 'bgr'))
    assert 'missing' in str(e.value)


def test_existing_outputs_need_overwrite_or_resume(tmp_path, checkpoint, capsys):
    src, bgr = pair(32, 48)
    write_image(str(tmp_path / 'a.png'), src)
    write_image(str(tmp_path / 'b.png'), bgr)
    args = ['--src', str(tmp_path / 'a.png'), '--bgr', str(tmp_path / 'b.png'), '--output-dir', str(tmp_path / 'o')]
    assert run(checkpoint, *args) == 0
    with pytest.raises(SystemExit) as e:
        run(checkpoint, *args)
    assert 'exist already' in str(e.value)
    stamp = os.path.getmtime(tmp_path / 'o' / 'pha' / 'a.png')
    assert run(checkpoint, *args, '--resume') == 0
    assert 'already finished' in capsys.readouterr().out
    assert os.path.getmtime(tmp_path / 'o' / 'pha' / 'a.png') == stamp
    assert run(checkpoint, *args, '-y') == 0


def test_16_bit_gray_rgba_and_exif_inputs(tmp_path, checkpoint):
    src, bgr = pair(40, 60)
    cv2.imwrite(str(tmp_path / 'deep.png'), (src[..., ::-1] * 65535).astype(np.uint16))
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.concatenate([(src[..., ::-1] * 255).astype(np.uint8),
                                                              np.full((40, 60, 1), 255, np.uint8)], axis=2))
    write_image(str(tmp_path / 'gray.png'), src.mean(axis=2))
    rotated = Image.fromarray((np.rot90(src, 1) * 255).astype(np.uint8))   # stored 60x40, EXIF says rotate
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / 'exif.jpg', exif=exif, quality=95)
    assert read_image(str(tmp_path / 'exif.jpg')).shape == (40, 60, 3)
    assert np.abs(read_image(str(tmp_path / 'deep.png')) - src).max() < 1e-4
    write_image(str(tmp_path / 'plate.png'), bgr)
    for name in ('deep.png', 'rgba.png', 'gray.png', 'exif.jpg'):
        out = tmp_path / 'out'
        assert run(checkpoint, '--src', str(tmp_path / name), '--bgr', str(tmp_path / 'plate.png'),
                   '--output-dir', str(out), '-y') == 0
        assert read_alpha(str(out / 'pha' / (os.path.splitext(name)[0] + '.png'))).shape == (40, 60)


def test_target_colour_composite(tmp_path, checkpoint):
    src, bgr = pair(32, 32)
    write_image(str(tmp_path / 'a.png'), src)
    write_image(str(tmp_path / 'b.png'), bgr)
    out = tmp_path / 'o'
    run(checkpoint, '--src', str(tmp_path / 'a.png'), '--bgr', str(tmp_path / 'b.png'), '--output-dir', str(out),
        '--target-bgr', '#00ff00', '--output-types', 'com', 'pha', 'fgr')
    com, pha, fgr = (read_image(str(out / t / 'a.png')) for t in ('com', 'pha', 'fgr'))
    expected = fgr * pha + np.float32([0, 1, 0]) * (1 - pha)
    assert np.abs(com - expected).max() <= 2.5 / 255


def write_video(path, frames, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, frames[0].shape[1::-1])
    for f in frames:
        writer.write((f[..., ::-1] * 255).astype(np.uint8))
    writer.release()


def test_yuv420_is_ffmpegs_conversion():
    """The video writer's own RGB/gray -> yuv420p equals swscale's (what PyAV would do) within rounding."""
    av = pytest.importorskip('av')
    photo = (read_image(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'image', 'src', 'bgmv1_0500.jpg'))
             * 255).round().astype(np.uint8)[:240, :320]
    h = photo.shape[0]
    for frame, fmt in ((photo, 'rgb24'), (cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 'gray')):
        ours = yuv420(frame).astype(int)
        theirs = av.VideoFrame.from_ndarray(frame, fmt).reformat(format='yuv420p').to_ndarray().astype(int)
        assert ours.shape == theirs.shape == (h * 3 // 2, 320)
        assert np.abs(ours[:h] - theirs[:h]).max() <= 1                      # luma
        chroma = np.abs(ours[h:] - theirs[h:])                                 # subsampled with other filters
        assert chroma.mean() < 0.5 and chroma.max() <= 12
    noise = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)      # chroma of 2 x 2 means
    cb = 128 + noise.astype(float) @ np.array([-37.797, -74.203, 112.0]) / 255
    u = yuv420(noise)[32:40].reshape(16, 24)
    error = np.abs(u - cb.reshape(16, 2, 24, 2).mean((1, 3)))                    # three roundings to uint8
    assert error.mean() < 0.5 and error.max() <= 1.5


@pytest.mark.parametrize('fmt', ['video', 'png'])
def test_video_keeps_length_and_rate(tmp_path, checkpoint, fmt):
    src, bgr = pair(48, 64)
    frames = [np.roll(src, 2 * i, axis=1) for i in range(5)]
    write_video(tmp_path / 'clip.mp4', frames, fps=12)
    write_image(str(tmp_path / 'plate.png'), bgr)
    out = tmp_path / 'out'
    assert run(checkpoint, '--src', str(tmp_path / 'clip.mp4'), '--bgr', str(tmp_path / 'plate.png'),
               '--output-dir', str(out), '--output-format', fmt, '--batch-size', '2') == 0
    for t in ('com', 'pha', 'fgr'):
        if fmt == 'video':
            video = VideoReader(str(out / 'clip' / f'{t}.mp4'))
            assert (len(video), round(video.fps), video.width, video.height) == (5, 12, 64, 48)
        else:
            assert sorted(os.listdir(out / 'clip' / t)) == [f'{i:05d}.png' for i in range(5)]
    assert not list(out.rglob('.tmp-*'))


def test_alignment_recovers_a_known_homography():
    h, w = 240, 320
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), 1.5)
    scene = cv2.normalize(scene, None, 0, 1, cv2.NORM_MINMAX)
    H = np.array([[1.02, 0.01, -6.0], [-0.015, 0.99, 4.0], [2e-5, -1e-5, 1.0]])
    src = cv2.warpPerspective(scene, H, (w, h))                       # the camera moved
    src[80:200, 120:220] = [0.9, 0.1, 0.1]                             # and a subject came in
    aligned, estimate = align_background(src, scene)
    assert estimate is not None
    corners = np.float32([[0, 0], [w, 0], [0, h], [w, h]]).reshape(-1, 1, 2)
    moved = lambda M: cv2.perspectiveTransform(corners, M)
    assert np.abs(moved(estimate) - moved(H)).max() < 1.0
    inside = np.zeros((h, w), bool)
    inside[20:-20, 20:-20] = True
    inside[80:200, 120:220] = False
    assert np.abs(aligned - src)[inside].mean() < 0.01
    blank = np.full((h, w, 3), 0.5, np.float32)
    assert align_background(blank, blank) == (None, None)


@pytest.fixture(scope='module')
def rvm_checkpoint(tmp_path_factory):
    return random_weights(tmp_path_factory, 'rvm', 'mobilenetv3', seed=3)


def test_rvm_video_and_sequence_carry_the_state_across_chunks(tmp_path, rvm_checkpoint):
    src, _ = pair(64, 80)
    frames = [np.roll(src, 3 * i, axis=1) for i in range(4)]
    for i, f in enumerate(frames):
        write_image(str(tmp_path / 'seq' / f'f{i:03d}.png'), f)
    write_video(tmp_path / 'clip.mp4', frames, fps=10)
    common = ['--model-type', 'rvm', '--model-checkpoint', rvm_checkpoint, '--device', 'cpu',
              '--downsample-ratio', '0.5', '--output-format', 'png']
    assert predict.main(['--src', str(tmp_path / 'seq'), '--output-dir', str(tmp_path / 'one'), *common]) == 0
    assert predict.main(['--src', str(tmp_path / 'seq'), '--output-dir', str(tmp_path / 'two'), '--seq-chunk', '3',
                         *common]) == 0
    one = [read_alpha(str(tmp_path / 'one' / 'seq' / 'pha' / f'f{i:03d}.png')) for i in range(4)]
    two = [read_alpha(str(tmp_path / 'two' / 'seq' / 'pha' / f'f{i:03d}.png')) for i in range(4)]
    assert np.abs(np.stack(one) - np.stack(two)).max() <= 1 / 255 + 1e-6
    # the state matters: a frame matted alone differs from the same frame in its sequence
    write_image(str(tmp_path / 'last' / 'f003.png'), frames[3])
    assert predict.main(['--src', str(tmp_path / 'last'), '--output-dir', str(tmp_path / 'alone'), *common]) == 0
    alone = read_alpha(str(tmp_path / 'alone' / 'last' / 'pha' / 'f003.png'))
    assert np.abs(alone - one[3]).max() > 2 / 255
    out = tmp_path / 'video'
    assert predict.main(['--src', str(tmp_path / 'clip.mp4'), '--output-dir', str(out), *common[:-2]]) == 0
    for t in ('com', 'pha', 'fgr'):
        video = VideoReader(str(out / 'clip' / f'{t}.mp4'))
        assert (len(video), round(video.fps), video.width, video.height) == (4, 10, 80, 64)
    with pytest.raises(SystemExit):
        predict.main(['--src', str(tmp_path / 'clip.mp4'), '--bgr', str(tmp_path / 'clip.mp4'), *common])


def test_rvm_long_clip_takes_the_fast_backend_and_keeps_its_export(tmp_path, rvm_checkpoint, monkeypatch, capsys):
    """Above RVM.auto_frames frames on CPU, --backend auto exports the graph (kept in MATTING_CACHE_DIR for the next
    run) and mattes as dygraph does; the summary gives the speed of the whole run and of the model."""
    pytest.importorskip('onnxruntime')
    from families.rvm import RVM
    frames = RVM.auto_frames + 2
    monkeypatch.setenv('MATTING_CACHE_DIR', str(tmp_path / 'cache'))
    src, _ = pair(72, 96)
    for i in range(frames):
        write_image(str(tmp_path / 'seq' / f'f{i:03d}.png'), np.roll(src, 3 * i, axis=1))
    common = ['--model-type', 'rvm', '--model-checkpoint', rvm_checkpoint, '--device', 'cpu', '--src',
              str(tmp_path / 'seq'), '--downsample-ratio', '0.5', '--output-format', 'png', '--output-types', 'pha']
    assert predict.main([*common, '--output-dir', str(tmp_path / 'fast')]) == 0
    assert 'frames/s; the model alone' in capsys.readouterr().out
    assert len(os.listdir(tmp_path / 'cache' / 'graphs')) == 1
    assert predict.main([*common, '--output-dir', str(tmp_path / 'slow'), '--backend', 'dygraph']) == 0
    for i in range(frames):
        fast, slow = (read_alpha(str(tmp_path / d / 'seq' / 'pha' / f'f{i:03d}.png')) for d in ('fast', 'slow'))
        assert np.abs(fast - slow).max() <= 1 / 255 + 1e-6
    RVM.graphs.clear()                                   # a new process: only the disk keeps the export
    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / 'cache').rglob('*')}
    assert predict.main([*common, '--output-dir', str(tmp_path / 'again'), '-y']) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'cache').rglob('*')} == kept     # used, not made again


@pytest.mark.parametrize('backend', ['inference', 'onnxruntime'])
def test_exported_backends_give_the_dygraph_matte(tmp_path, checkpoint, backend):
    if backend == 'onnxruntime':
        pytest.importorskip('onnxruntime')
        pytest.importorskip('paddle2onnx')
    for i in range(2):
        src, bgr = pair(48, 72, seed=i)
        write_image(str(tmp_path / 'src' / f'{i}.png'), src)
        write_image(str(tmp_path / 'bgr' / f'{i}.png'), bgr)
    args = ['--src', str(tmp_path / 'src'), '--bgr', str(tmp_path / 'bgr'), '--output-types', 'pha', 'fgr',
            '--model-refine-mode', 'thresholding', '--model-refine-threshold', '0.2', '--batch-size', '2']
    assert run(checkpoint, *args, '--output-dir', str(tmp_path / 'dy'), '--backend', 'dygraph') == 0
    assert run(checkpoint, *args, '--output-dir', str(tmp_path / 'ex'), '--backend', backend) == 0
    for i in range(2):
        for t in ('pha', 'fgr'):
            a, b = (read_image(str(tmp_path / d / t / f'{i}.png')) for d in ('dy', 'ex'))
            assert np.abs(a - b).max() <= 1.5 / 255
