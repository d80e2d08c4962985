"""Resolved configuration and the family registry: the defaults --help shows are the ones used, per family and
tool; cards; registry dispatch and one-line refusals; named outputs."""
import dataclasses
import os
import re

import numpy as np
import paddle
import pytest

import config
import eval as evaluation
import families
import predict
import train
from conftest import ROOT, build_model
from tools import export, speed_test
from utils.checkpoint import read_card

WORDS = {'none': None, 'true': True, 'false': False}


def shown_defaults(parser):
    """{dest: text of '(default: ...)'} as --help prints it (whitespace normalised)."""
    text = ''.join(parser.format_help().split())     # argparse wraps lines, also at hyphens
    shown = {}
    for action in parser._actions:
        if action.help and '(default: ' in action.help:
            help_text = ' '.join(action.help.split())
            assert help_text.replace(' ', '') in text
            shown[action.dest] = help_text.split('(default: ', 1)[1][:-1]
    return shown


def default_for(text, keys):
    """The value a default text gives for a family / model type ('bgmv2 mobilenetv2, rvm mobilenetv3'), or its
    leading value ('0.25, or the checkpoint's card')."""
    for part in text.split(','):
        words = part.split()
        if len(words) >= 2 and words[0] in keys:
            return words[1]
    return re.split(r'[,;:]| \(| or ', text)[0].strip()


def same(value, text):
    if isinstance(value, tuple) and not value:
        return text == 'none'
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.relpath(value, ROOT).rstrip('/') == text.rstrip('/')
    if text in WORDS:
        return value == WORDS[text]
    if isinstance(value, tuple):
        return config.show(value) == text
    try:
        return float(text) == value
    except ValueError:
        return str(value) == text


def check(parser, objects, keys, skip=()):
    """Every option field of `objects` shown with a default in `parser`'s help has that value."""
    shown = shown_defaults(parser)
    values = {f.name: getattr(obj, f.name) for obj in objects for f in dataclasses.fields(obj)}
    flags = {flag: a.dest for a in parser._actions for flag in a.option_strings}
    checked = 0
    for name, value in values.items():
        if name in shown and name not in skip:
            text = shown[name] if same(value, shown[name]) else default_for(shown[name], keys)   # 'a,b' lists
            if text in flags:                                    # '(default: --dataset-name)'
                assert value == values[flags[text]], (name, value, text)
            else:
                assert same(value, text), (name, value, text)
            checked += 1
    return checked


@pytest.fixture
def cardless(tmp_path):
    path = tmp_path / 'weights.pdparams'
    path.write_bytes(b'')             # resolution only needs the file to exist; no card next to it
    return str(path)


@pytest.mark.parametrize('family', list(families.FAMILIES))
def test_predict_and_eval_help_defaults_are_the_resolved_ones(family, cardless):
    spec = families.FAMILIES[family]
    for tool in (predict, evaluation):
        parser = tool.parser()
        args = parser.parse_args(['--model-type', spec.model_types[-1], '--model-checkpoint', cardless])
        model = config.resolve_model(args, read_card)
        assert (model.family, model.backbone, model.checkpoint) == (family, spec.backbone_for(model.model_type),
                                                                    cardless)
        run = config.fill(config.PredictConfig if tool is predict else config.EvalConfig, args)
        keys = {family, model.model_type}
        n = check(parser, [model, model.options, config.resolve_backend(args, model), run], keys,
                  skip=('model_type', 'checkpoint', 'src', 'bgr', 'data_dir', 'bgr_dir'))
        assert n >= len(dataclasses.fields(spec.options)) + 8


def test_train_help_defaults_are_the_resolved_ones_per_model_type(cardless):
    parser = train.parser()
    for family, model_type, backbone in [('bgmv2', t, 'mobilenetv2') for t in families.FAMILIES['bgmv2'].model_types] \
            + [('rvm', 'rvm', 'mobilenetv3')]:
        args = parser.parse_args(['--model-type', model_type])
        model = config.resolve_model(args, read_card, demo=False)
        data, run, options = config.resolve_train(args, model)
        assert check(parser, [model, data, run, options], {family, model_type},
                     skip=('model_type', 'name')) >= 25
        assert run.name == f'{model_type}_{backbone}'          # the real backbone, not None


def test_tool_defaults_are_shown_and_used(cardless):
    parser = export.parser()
    args = parser.parse_args(['--output', 'x', '--model-type', 'rvm', '--model-checkpoint', cardless])
    model = config.resolve_model(args, read_card, export.EXPORT_DEFAULTS)
    assert model.options.downsample_ratio == 0.25 and check(parser, [model.options], {'rvm'}) == 2
    parser = speed_test.parser()
    args = parser.parse_args([])
    model = config.resolve_model(args, read_card, speed_test.TOOL_DEFAULTS, demo=False)
    backend = config.resolve_backend(args, model, speed_test.TOOL_DEFAULTS)
    assert model.options.refine_prevent_oversampling is False and model.checkpoint is None
    assert (backend.backend, backend.threads) == ('dygraph', 2)
    assert check(parser, [model.options, backend], {'bgmv2', 'mattingrefine'}) >= 8


def test_the_card_sets_defaults_below_the_command_line(tmp_path):
    parser = predict.parser()
    model = config.resolve_model(parser.parse_args([]), read_card)            # the demo model and its card
    assert model.checkpoint == families.FAMILIES['bgmv2'].demo_checkpoint
    assert model.options.backbone_scale == read_card(model.checkpoint)['backbone_scale'] == 0.125
    model = config.resolve_model(parser.parse_args(['--model-backbone-scale', '0.5']), read_card)
    assert model.options.backbone_scale == 0.5
    weights = tmp_path / 'run.pdparams'
    weights.write_bytes(b'')
    (tmp_path / 'run.json').write_text('{"config": {"family": "rvm", "model_type": "rvm", "backbone": "resnet50", '
                                       '"refiner": "fast_guided_filter"}}')
    model = config.resolve_model(parser.parse_args(['--model-checkpoint', str(weights)]), read_card)
    assert (model.model_type, model.backbone, model.options.refiner) == ('rvm', 'resnet50', 'fast_guided_filter')
    (tmp_path / 'run.json').write_text('{"config": [1, 2]')
    with pytest.raises(ValueError, match='run.json: unreadable checkpoint card'):
        config.resolve_model(parser.parse_args(['--model-checkpoint', str(weights)]), read_card)


@pytest.mark.parametrize('argv, message', [
    (['--model-type', 'rvm', '--model-backbone', 'mobilenetv2'], 'does not fit --model-type rvm'),
    (['--model-type', 'rvm', '--model-refine-mode', 'full'], '--model-refine-mode: not an option of rvm'),
    (['--model-backbone', 'resnet50'], 'no demo model fits mattingrefine resnet50'),
    (['--model-type', 'rvm'], 'no demo model fits rvm mobilenetv3'),
    (['--model-checkpoint', '/nonexistent.pth'], '/nonexistent.pth: checkpoint not found'),
])
def test_resolution_refuses_in_one_line(argv, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        config.resolve_model(predict.parser().parse_args(argv), read_card)
    assert '\n' not in str(e.value)


def test_registry_dispatch_and_missing_capabilities():
    assert families.family_of('mattingbase').name == families.family_of('mattingrefine').name == 'bgmv2'
    assert families.family_of('rvm').name == 'rvm'
    assert set(families.MODEL_TYPES) == {t for f in families.FAMILIES.values() for t in f.model_types}
    with pytest.raises(families.Unavailable, match='^training for newtype is not available yet$'):
        families.Family().trainer('newtype')
    assert families.FAMILIES['bgmv2'].trainer('mattingrefine').defaults['batch_size'] == 4
    with pytest.raises(SystemExit, match=r'^error: dataset .videomatte240k.: train folder \S+ not found'):
        train.main(['--model-type', 'rvm', '--dataset-root', f'videomatte240k={ROOT}/absent'])
    with pytest.raises(families.Unavailable, match='^rvm exports its graph on the fly for each frame size'):
        model = config.resolve_model(predict.parser().parse_args(['--model-type', 'rvm', '--model-checkpoint',
                                                                  __file__]), read_card)
        model.spec.runner(model, None, config.BackendConfig(backend='inference', export_dir='x'), 1)


@pytest.mark.parametrize('model_type, backbone', [('mattingbase', 'mobilenetv2'), ('mattingrefine', 'mobilenetv2'),
                                                  ('rvm', 'mobilenetv3')])
def test_outputs_are_named_in_the_official_order(model_type, backbone):
    spec = families.family_of(model_type)
    network = build_model(model_type, backbone)
    network.eval()
    names = spec.outputs(model_type)._fields
    assert names == {'mattingbase': ('pha', 'fgr', 'err', 'hid'),
                     'mattingrefine': ('pha', 'fgr', 'pha_sm', 'fgr_sm', 'err_sm', 'ref_sm'),
                     'rvm': ('fgr', 'pha', 'r1', 'r2', 'r3', 'r4')}[model_type]
    x = paddle.to_tensor(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
    with paddle.no_grad():
        out = network(x) if model_type == 'rvm' else network(x, x * 0.9)
    assert type(out)._fields == names and out.pha is out[names.index('pha')]
    assert list(out.pha.shape) == [1, 1, 64, 64]


@pytest.mark.parametrize('family, frames, device, expected', [
    ('bgmv2', 9, 'cpu', 'fast'), ('bgmv2', 8, 'cpu', 'dygraph'), ('bgmv2', 9, 'gpu', 'dygraph'),
    ('rvm', 9, 'cpu', 'fast'), ('indexnet', 2, 'cpu', 'inference'), ('indexnet', 1, 'cpu', 'dygraph')])
def test_auto_takes_the_fastest_installed_export_above_the_threshold(family, frames, device, expected, monkeypatch):
    """'fast': ONNX Runtime, or Paddle Inference where onnxruntime / paddle2onnx are missing; a named backend is
    taken as it is."""
    from inference import backends
    spec = families.FAMILIES[family]
    model = dataclasses.replace(config.ModelConfig(model_type=spec.model_types[0]), device=device)
    auto, named = config.BackendConfig(), config.BackendConfig(backend='dygraph')
    for onnx in (True, False):
        monkeypatch.setattr(backends, 'find_spec', lambda name: onnx)
        want = ('onnxruntime' if onnx else 'inference') if expected == 'fast' else expected
        assert spec.backend_for(auto, model, frames) == want
        assert spec.backend_for(named, model, frames + 10) == 'dygraph'
