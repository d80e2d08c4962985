"""Bad input in every entry point ends in one line naming the file and the problem: no traceback, no hang, no
lost output. Data-loading failures in worker processes reach the training process."""
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import cv2
import numpy as np
import paddle
import pytest

import eval as evaluation
import predict
import train
from conftest import ROOT, build_model
from tools import convert_weights
from training.loader import BatchLoader, DataLoadingError


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def write(path, h, w, channels=3, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = (np.random.default_rng(seed).random((h, w, channels)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), image if channels > 1 else image[..., 0])
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    f = {'root': root, 'src': write(root / 'src' / 'a.png', 40, 60), 'bgr': write(root / 'bgr' / 'a.png', 40, 60, seed=1),
         'file': str(root / 'a_file'), 'evil': str(root / 'evil.pdparams'), 'marker': str(root / 'PWNED'),
         'weights': str(root / 'random.pdparams'), 'rvm': str(root / 'rvm.pdparams')}
    open(f['file'], 'w').write('x')
    with open(f['evil'], 'wb') as out:
        pickle.dump({'w': Evil(f['marker'])}, out)
    paddle.seed(0)
    paddle.save(build_model('mattingrefine', 'mobilenetv2').state_dict(), f['weights'])
    paddle.save(build_model('rvm', 'mobilenetv3').state_dict(), f['rvm'])
    for split in ('train', 'valid'):
        for i in range(6):
            write(root / 'ds' / split / 'fgr' / f'{i}.png', 48, 48, seed=i)
            write(root / 'ds' / split / 'pha' / f'{i}.png', 48, 48, 1, seed=10 + i)
        for i in range(3):
            write(root / 'bg' / split / f'{i}.jpg', 60, 60, seed=20 + i)
    return f


def one_line_error(main, argv, *expected):
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = str(e.value)
    assert message.startswith('error: ') and '\n' not in message, message
    for text in expected:
        assert text in message, message
    return message


# ---------------------------------------------------------------- predict

def test_predict_images_too_small_for_the_network_are_padded_and_cropped_back(files, tmp_path):
    for h, w in ((1, 1), (3, 5), (7, 2)):
        src, bgr = write(tmp_path / f'{h}x{w}.png', h, w), write(tmp_path / 'plates' / f'{h}x{w}.png', h, w, seed=2)
        out = tmp_path / f'out{h}x{w}'
        for extra in ([], ['--model-type', 'mattingbase']):
            assert predict.main(['--src', src, '--bgr', bgr, '--output-dir', str(out), '-y',
                                 '--model-checkpoint', files['weights'], *extra]) == 0
            assert cv2.imread(str(out / 'com' / f'{h}x{w}.png'), cv2.IMREAD_UNCHANGED).shape == (h, w, 4)


def test_predict_refuses_bad_outputs_targets_and_checkpoints(files, tmp_path):
    pair = ['--src', files['src'], '--bgr', files['bgr']]
    one_line_error(predict.main, pair + ['--output-dir', files['file']], files['file'], 'is a file')
    one_line_error(predict.main, pair + ['--output-dir', os.path.join(files['file'], 'sub')], 'a file is in the way')
    for target in ('notacolour', '#12', '300,0,0'):
        one_line_error(predict.main, pair + ['--output-dir', str(tmp_path), '--target-bgr', target],
                       f'--target-bgr {target}: neither a colour')
    one_line_error(predict.main, pair + ['--output-dir', str(tmp_path), '--model-checkpoint', files['evil']],
                   files['evil'], 'refusing to load')
    assert not os.path.exists(files['marker'])
    one_line_error(predict.main, pair + ['--output-dir', str(tmp_path), '--model-checkpoint', files['rvm']],
                   'it holds rvm mobilenetv3: pass --model-type rvm')
    truncated = tmp_path / 'cut.pth'
    with zipfile.ZipFile(truncated, 'w') as z:
        z.writestr('m/data.pkl', b'x' * 1000)
    truncated.write_bytes(truncated.read_bytes()[:300])
    one_line_error(predict.main, pair + ['--output-dir', str(tmp_path), '--model-checkpoint', str(truncated)],
                   'damaged or truncated')
    assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ['cut.pth']      # nothing written


def test_predict_bad_videos_and_frames_are_named_and_skipped(files, tmp_path, capsys):
    (tmp_path / 'broken.mp4').write_bytes(os.urandom(2000))
    write(tmp_path / 'frames' / '0001.png', 32, 32)
    write(tmp_path / 'frames' / '0002.png', 40, 32)
    assert predict.main(['--model-type', 'rvm', '--model-checkpoint', files['rvm'], '--src', str(tmp_path),
                         '--output-dir', str(tmp_path / 'out'), '--output-format', 'png']) == 1
    err = capsys.readouterr().err
    assert 'broken.mp4: cannot open as a video' in err and '0002.png: frame is 32x40, the sequence 32x32' in err


# ---------------------------------------------------------------- eval

def test_eval_bad_test_sets_and_outputs(files, tmp_path, capsys):
    common = ['--bgr-dir', str(files['root'] / 'bg' / 'valid'), '--model-checkpoint', files['weights']]
    one_line_error(evaluation.main, ['--data-dir', str(files['root'] / 'ds' / 'valid'), '--output-dir', files['file'],
                                     *common], 'a file is in the way')
    (tmp_path / 'empty').mkdir()
    one_line_error(evaluation.main, ['--data-dir', str(tmp_path / 'empty'), '--output-dir', str(tmp_path / 'o'),
                                     *common], 'no matting folder')
    one_line_error(evaluation.main, ['--data-dir', str(files['root'] / 'ds' / 'valid'), '--output-dir',
                                     str(tmp_path / 'o2'), *common[:2], '--model-checkpoint', files['evil']],
                   'refusing to load')
    test = tmp_path / 'test'
    for i in range(3):
        write(test / 'fgr' / f'{i}.png', 40, 40, seed=i)
        write(test / 'pha' / f'{i}.png', 40, 40 if i != 2 else 36, 1, seed=i)
    (test / 'fgr' / '1.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    assert evaluation.main(['--data-dir', str(test), '--output-dir', str(tmp_path / 'o3'), *common]) == 1
    out = capsys.readouterr()
    assert '1.png: not a readable image' in out.err and '2.png is 40x40 but its alpha' in out.err
    assert '1 of 3 images scored (2 failed)' in out.out


# ---------------------------------------------------------------- train

def train_args(files, tmp_path, *extra):
    root = files['root']
    return ['--dataset-root', f'ds={root / "ds"}', '--dataset-root', f'bg={root / "bg"}', '--dataset-name', 'ds',
            '--background-name', 'bg', '--model-type', 'mattingbase', '--resolution', '32', '--batch-size', '2',
            '--max-steps', '2', '--valid-samples', '1', '--checkpoint-dir', str(tmp_path / 'ck'),
            '--log-dir', str(tmp_path / 'log'), '--num-workers', '0', *extra]


def test_train_bad_datasets_checkpoints_and_folders(files, tmp_path):
    one_line_error(train.main, train_args(files, tmp_path, '--dataset-root', f'ds={tmp_path / "absent"}'),
                   "dataset 'ds': train folder", str(tmp_path / 'absent'))
    (tmp_path / 'empty' / 'train' / 'fgr').mkdir(parents=True)
    (tmp_path / 'empty' / 'train' / 'pha').mkdir()
    one_line_error(train.main, train_args(files, tmp_path, '--dataset-root', f'ds={tmp_path / "empty"}'),
                   'hold no images')
    os.remove(write(tmp_path / 'unpaired' / 'train' / 'pha' / '1.png', 8, 8, 1))
    write(tmp_path / 'unpaired' / 'train' / 'fgr' / '1.png', 8, 8)
    write(tmp_path / 'unpaired' / 'train' / 'pha' / '2.png', 8, 8, 1)
    one_line_error(train.main, train_args(files, tmp_path, '--dataset-root', f'ds={tmp_path / "unpaired"}'),
                   'fgr/1.png has no partner in pha/', 'pha/2.png has no partner in fgr/')
    one_line_error(train.main, train_args(files, tmp_path, '--checkpoint', files['evil']), 'refusing to load')
    assert not os.path.exists(files['marker'])
    one_line_error(train.main, train_args(files, tmp_path, '--resume', str(tmp_path / 'nope.json')),
                   'not a checkpoint state file')
    one_line_error(train.main, train_args(files, tmp_path, '--checkpoint-dir', files['file']), 'a file is in the way')
    assert train.main(train_args(files, tmp_path, '--resume', '--name', 'fresh')) == 0
    assert 'no complete checkpoint' in (tmp_path / 'log' / 'fresh' / 'train.log').read_text()


def test_a_corrupt_training_image_is_skipped_with_a_warning_within_seconds(files, tmp_path):
    """In worker processes, as a user runs it: the file is named, training finishes (no hang, no traceback)."""
    import shutil
    shutil.copytree(files['root'] / 'ds', tmp_path / 'ds')
    (tmp_path / 'ds' / 'train' / 'fgr' / '2.png').write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(300))
    (tmp_path / 'ds' / 'train' / 'pha' / '4.png').write_bytes(b'')
    write(tmp_path / 'ds' / 'train' / 'pha' / '5.png', 40, 48, 1)            # fgr 48x48: sizes differ
    argv = train_args(files, tmp_path, '--dataset-root', f'ds={tmp_path / "ds"}', '--num-workers', '2',
                      '--max-steps', '6', '--epochs', '3')
    start = time.time()
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *argv], capture_output=True,
                            text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert time.time() - start < 120
    for name in ('fgr/2.png: not a readable image', 'pha/4.png: not a readable image', 'pha/5.png is 48x40'):
        assert result.stderr.count(name) == 1, result.stderr[-3000:]           # once, not once per epoch
    assert (tmp_path / 'ck' / 'mattingbase_mobilenetv2' / 'final.pdparams').exists()
    for i in range(6):
        (tmp_path / 'ds' / 'train' / 'fgr' / f'{i}.png').write_bytes(b'junk')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *argv, '--name', 'hopeless'],
                            capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('error: ') and 'in a row cannot be read' in result.stderr


class Dies:
    """Items that kill, fail or stall the worker process loading them."""

    def __init__(self, how):
        self.how = how

    def __getitem__(self, key):
        if self.how == 'die':
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == 'stall':
            time.sleep(60)
        raise ValueError(f'sample {key}: cannot be read')


@pytest.mark.parametrize('how, error, message', [('die', DataLoadingError, 'worker died'),
                                                 ('fail', ValueError, r'sample \(0, 1\): cannot be read'),
                                                 ('stall', DataLoadingError, 'took more than 8 s')])
def test_worker_deaths_errors_and_stalls_reach_the_training_process(how, error, message):
    loader = BatchLoader(Dies(how), [[(0, 1)], [(0, 2)]], collate=list, workers=1, timeout=8)
    start = time.time()
    with pytest.raises(error, match=message):
        list(loader)
    loader.close()
    assert time.time() - start < 30


# ---------------------------------------------------------------- converter

def test_converter_refuses_without_writing(files, tmp_path, capsys):
    assert convert_weights.main([files['evil'], str(tmp_path / 'x.pdparams')]) == 1
    assert convert_weights.main([files['weights'], str(tmp_path)]) == 1            # a folder as output
    assert convert_weights.main([files['weights'], os.path.join(files['file'], 'x.pdparams')]) == 1
    err = capsys.readouterr().err
    assert 'refusing to load' in err and 'is a folder' in err and 'a file is in the way' in err
    assert 'Traceback' not in err and not os.path.exists(files['marker']) and os.listdir(tmp_path) == []
