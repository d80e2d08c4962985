"""Checkpoint reading and conversion without torch: round trips, wrappers, refusal of code, key checks."""
import collections
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import paddle
import pytest

import families
from conftest import DATA, ROOT, build_model
from seeded import make_weights, to_paddle_names
from torch_writer import save_torch_legacy, save_torch_zip
from utils.checkpoint import load_state_dict, load_weights
from utils.torch_format import StorageRef, StorageType, TensorRef, _tensor_array

CONVERT = os.path.join(ROOT, 'tools', 'convert_weights.py')


@pytest.fixture(scope='module')
def seeded_torch():
    """The seeded MattingRefine(mobilenetv2) state_dict as torch saves it: with int64 num_batches_tracked."""
    with open(os.path.join(DATA, 'bgmv2', 'keys_mattingrefine_mobilenetv2.json'), encoding='utf-8') as f:
        weights = make_weights([(k, s, kind) for k, s, kind, _ in json.load(f)['entries']])
    sd = collections.OrderedDict()
    for key, value in weights.items():
        sd[key] = value
        if key.endswith('running_var'):
            sd[key[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
    return sd


def convert(src, dst):
    return subprocess.run([sys.executable, CONVERT, src, dst], capture_output=True, text=True, cwd=ROOT)


def test_zip_round_trip_through_the_converter(tmp_path, seeded_torch):
    src, dst = str(tmp_path / 'seeded.pth'), str(tmp_path / 'seeded.pdparams')
    save_torch_zip(seeded_torch, src)
    result = convert(src, dst)
    assert result.returncode == 0, result.stderr
    assert 'mattingrefine / mobilenetv2' in result.stdout and '5,006,839' in result.stdout
    expected = to_paddle_names({k: v for k, v in seeded_torch.items() if not k.endswith('num_batches_tracked')})
    loaded = paddle.load(dst)
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(loaded[key]), value, err_msg=key)
    build_model('mattingrefine', 'mobilenetv2').set_state_dict(loaded)     # the loading recipe


@pytest.mark.parametrize('wrap', [
    lambda sd: sd,
    lambda sd: {'state_dict': sd},
    lambda sd: {'model_state': sd, 'epoch': 7, 'lr': 0.5},
    lambda sd: {'model': collections.OrderedDict(('module.' + k, v) for k, v in sd.items())},
    lambda sd: collections.OrderedDict(('module.' + k, v) for k, v in sd.items()),
])
@pytest.mark.parametrize('save', [save_torch_zip, save_torch_legacy])
def test_wrappers_prefix_and_formats(tmp_path, wrap, save):
    sd = collections.OrderedDict([
        ('decoder.conv4.weight', np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)),
        ('decoder.bn1.running_mean', np.array([1.5, -2], np.float32)),
        ('decoder.bn1.running_var', np.array([3, 4], np.float16)),
        ('decoder.bn1.num_batches_tracked', np.array(12, np.int64))])
    path = str(tmp_path / 'ckpt.pth')
    save(wrap(sd), path)
    out = load_state_dict(path)
    assert list(out) == ['decoder.conv4.weight', 'decoder.bn1._mean', 'decoder.bn1._variance']
    for got, want in zip(out.values(), sd.values()):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_offset_and_stride_are_honoured():
    storage = np.arange(20, dtype=np.float32)
    ref = StorageRef('0', StorageType('FloatStorage', 'f4'), None)
    got = _tensor_array(TensorRef(ref, 3, (4, 2), (1, 5)), lambda r: storage, 'x')    # a transposed view
    np.testing.assert_array_equal(got, storage[3:13].reshape(2, 5)[:, :4].T)
    with pytest.raises(ValueError, match='past its storage'):
        _tensor_array(TensorRef(ref, 3, (4, 4), (1, 5)), lambda r: storage, 'x')


def test_pdparams_with_wrapper(tmp_path):
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    path = str(tmp_path / 'w.pdparams')
    paddle.save({'model': layer.state_dict(), 'epoch': 3}, path)
    out = load_state_dict(path)
    assert sorted(out) == sorted(layer.state_dict())
    np.testing.assert_array_equal(out['0.weight'], layer[0].weight.numpy())


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('container', ['zip', 'plain'])
def test_malicious_pickle_is_refused_without_running(tmp_path, container):
    marker, path = tmp_path / 'pwned', str(tmp_path / 'evil.pth')
    payload = pickle.dumps(collections.OrderedDict(w=Exploit(marker)), protocol=2)
    if container == 'zip':
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr('archive/data.pkl', payload)
            archive.writestr('archive/version', '3\n')
    else:
        with open(path, 'wb') as f:
            f.write(payload)
    with pytest.raises(ValueError, match='system'):
        load_state_dict(path)
    result = convert(path, str(tmp_path / 'out.pdparams'))
    assert result.returncode != 0 and 'refusing' in result.stderr
    assert not marker.exists()


def test_mismatched_checkpoint_exits_nonzero_and_writes_nothing(tmp_path, seeded_torch):
    sd = collections.OrderedDict(seeded_torch)
    del sd['refiner.conv4.bias']
    sd['refiner.conv9.weight'] = np.zeros((1, 1, 1, 1), np.float32)
    sd['decoder.conv4.weight'] = sd['decoder.conv4.weight'][:, :-1]
    src = str(tmp_path / 'bad.pth')
    save_torch_zip(sd, src)
    result = convert(src, str(tmp_path / 'out' / 'bad.pdparams'))
    assert result.returncode == 1
    for text in ('missing', 'refiner.conv4.bias', 'unexpected', 'refiner.conv9.weight',
                 'shape mismatch', 'decoder.conv4.weight: checkpoint [37, 53, 3, 3], model [37, 54, 3, 3]'):
        assert text in result.stderr
    assert not os.path.exists(tmp_path / 'out') or os.listdir(tmp_path / 'out') == []


def test_load_weights_by_name_and_shape(tmp_path):
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    path = str(tmp_path / 'part.pth')
    save_torch_zip({'0.weight': np.ones((4, 3, 3, 3), np.float64), '0.bias': np.ones(5, np.float32),
                    '1.running_var': np.full(4, 2, np.float32), 'extra': np.zeros(1, np.float32)}, path)
    loaded, skipped = load_weights(layer, path)
    assert loaded == ['0.weight', '1._variance'] and skipped == ['0.bias', 'extra']
    assert layer[0].weight.dtype == paddle.float32 and float(layer[0].weight.sum()) == 108
    assert layer[1]._variance.numpy().tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match=r'(?s)missing.*1\.weight.*unexpected.*extra.*shape mismatch.*0\.bias'):
        load_weights(layer, path, strict=True)


@pytest.mark.parametrize('keys, model, options', [
    (['backbone.features.17.conv.0.0.weight', 'decoder.conv4.weight', 'refiner.conv1.weight'],
     ('mattingrefine', 'mobilenetv2'), {}),
    (['backbone.layer3.22.conv1.weight', 'backbone.layer4.0.conv1.weight', 'decoder.conv4.weight'],
     ('mattingbase', 'resnet101'), {}),
    (['backbone.layer3.5.conv1.weight', 'backbone.layer4.0.conv1.weight', 'refiner.conv1.weight'],
     ('mattingrefine', 'resnet50'), {}),
    (['backbone.features.16.0.weight', 'decoder.decode4.conv.0.weight', 'refiner.box_filter.weight'],
     ('rvm', 'mobilenetv3'), {'refiner': 'deep_guided_filter'}),
    (['backbone.layer4.2.conv3.weight', 'decoder.decode4.conv.0.weight'],
     ('rvm', 'resnet50'), {'refiner': 'fast_guided_filter'}),
])
def test_detect_model(keys, model, options):
    family, model_type, backbone, found = families.detect(keys)
    assert (model_type, backbone) == model and found == options and model_type in family.model_types


def test_unknown_layout_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match='unknown checkpoint layout'):
        families.detect(['fc.weight'])
    with pytest.raises(ValueError, match='not found'):
        load_state_dict(str(tmp_path / 'nope.pth'))
