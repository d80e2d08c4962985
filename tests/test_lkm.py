"""LKM (RVM with a UniRepLKNet backbone) parity with the official PyTorch model through this project's converter,
in its training form (DGF, FGF), its deploy form and this port's own re-parameterisation; the forms' detection and
strict loading. Golden vectors: tests/data/lkm (a subset of shared/golden/lkm, seeded weights)."""
import collections
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import config
import families
from conftest import DATA, ROOT, build_model
from model import MattingNetwork
from model.rvm import MattingNetworkStep
from seeded import load_entries, make_weights, to_paddle_names
from tools import convert_weights, reparameterize
from torch_writer import save_torch_zip

GOLDEN_DIR = os.path.join(DATA, 'lkm')
GOLDEN = np.load(os.path.join(GOLDEN_DIR, 'golden.npz'))
with open(os.path.join(GOLDEN_DIR, 'tolerances.json'), encoding='utf-8') as f:
    TOLERANCES = json.load(f)['tolerances']
TRAIN_SPEC, DEPLOY_SPEC = (os.path.join(GOLDEN_DIR, name) for name in ('lkm_keys.json', 'lkm_deploy_keys.json'))
FGF_ENTRIES = 631           # the FGF model's state_dict: the first 631 entries of the DGF one (FGF has no weights)
# shared/spec/rvm.md section 5, counted on the official model: (training form, deploy form), DGF
PARAMS = {False: 5_423_898, True: 5_031_242}
DGF_PARAMS = 808
HOOKS = {'dwt': 'decoder.down.conv_bn_relu', 's1': 'decoder.down', 'x1': 'decoder.decode1', 'projmat': 'project_mat',
         'refiner': 'refiner'}


def spec(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def deploy_reference():
    """tests/data/lkm/lkm_deploy.py: the golden data's numpy rebuild of the deploy weights."""
    found = importlib.util.spec_from_file_location('lkm_deploy', os.path.join(GOLDEN_DIR, 'lkm_deploy.py'))
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def sha256(weights):
    return hashlib.sha256(b''.join(v.astype('<f4').tobytes() for v in weights.values())).hexdigest()


def torch_checkpoint(weights, path):
    """A state_dict as torch saves it (int64 num_batches_tracked after each BatchNorm), written without torch."""
    sd = collections.OrderedDict()
    for key, value in weights.items():
        sd[key] = value
        if key.endswith('running_var'):
            sd[key[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
    save_torch_zip(sd, path)
    return path


@pytest.fixture(scope='module')
def weights():
    """{'train', 'fgf', 'deploy'}: seeded torch state_dicts (deploy: the numpy reference folding of train)."""
    train = make_weights(load_entries(TRAIN_SPEC))
    return {'train': train, 'fgf': dict(list(train.items())[:FGF_ENTRIES]),
            'deploy': deploy_reference().make_deploy_weights(train, DEPLOY_SPEC)}


@pytest.fixture(scope='module')
def files(weights, tmp_path_factory):
    """The three forms as official-style .pth files and converted by tools/convert_weights.py."""
    folder = tmp_path_factory.mktemp('lkm')
    out = {}
    for name, sd in weights.items():
        out[name + '.pth'] = torch_checkpoint(sd, str(folder / f'{name}.pth'))
        out[name] = str(folder / f'{name}.pdparams')
    out['cli'] = {}
    for name in ('train', 'deploy'):        # the command line, as the checker runs it
        result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'),
                                 out[name + '.pth'], out[name]], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        out['cli'][name] = result.stdout
    convert_weights.convert(out['fgf.pth'], out['fgf'])
    return out


def loaded(path, refiner='deep_guided_filter', deploy=False):
    """The checker's recipe: set_state_dict(paddle.load(converted)), no key missing or unexpected."""
    model = MattingNetwork('unireplknet', refiner=refiner, deploy=deploy)
    missing, unexpected = model.set_state_dict(paddle.load(path))
    assert not missing and not unexpected, (missing[:3], unexpected[:3])
    model.eval()
    return model


def run(model, src, ratio, states=(None,) * 4):
    """4-D src -> {rawfgr, rawpha (pre-clamp), fgr, pha, r1..r4, inter_dwt, inter_s1, inter_x1,
    inter_projmat_lr}, the intermediates from hooks on the official sublayers."""
    layers, captured = dict(model.named_sublayers()), {}
    hooks = [layers[HOOKS['dwt']].register_forward_pre_hook(lambda _, inputs: captured.update(dwt=inputs[0]))]
    hooks += [layers[path].register_forward_post_hook(lambda _, inputs, out, tag=tag: captured.update({tag: out}))
              for tag, path in HOOKS.items() if tag != 'dwt']
    try:
        with paddle.no_grad():
            out = model(paddle.to_tensor(src), *states, downsample_ratio=ratio)
    finally:
        for hook in hooks:
            hook.remove()
    if ratio != 1:
        fgr_residual, pha = (t.numpy() for t in captured['refiner'])
    else:
        fgr_residual, pha = np.split(captured['projmat'].numpy(), [3], axis=1)
    result = {'rawfgr': fgr_residual + src, 'rawpha': pha, 'inter_dwt': captured['dwt'].numpy(),
              'inter_s1': captured['s1'].numpy(), 'inter_x1': captured['x1'][0].numpy(),
              'inter_projmat_lr': captured['projmat'].numpy()}
    result.update(zip(['fgr', 'pha', 'r1', 'r2', 'r3', 'r4'], [t.numpy() for t in out]))
    return result


def assert_close(actual, name, expected=None):
    """Both criteria of the golden tolerances.json: max and mean absolute difference."""
    if expected is None:
        source = name.replace('_fgr', '_rawfgr').replace('_pha', '_rawpha')
        expected = GOLDEN[name] if name in GOLDEN else np.clip(GOLDEN[source], 0, 1)     # fgr, pha: clamped raw
    max_tol, mean_tol = TOLERANCES[name]
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    diff = np.abs(actual.astype(np.float64) - expected)
    assert diff.max() <= max_tol and diff.mean() <= mean_tol, (name, diff.max(), max_tol, diff.mean(), mean_tol)


def assert_case(result, prefix):
    """Every golden array of a case (prefix), so that none is forgotten."""
    names = [n for n in TOLERANCES if n.startswith(prefix)]
    assert names
    for name in names:
        assert_close(result[name[len(prefix):]], name)


def parameters(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def test_seeded_weights_are_the_golden_ones(weights):
    assert sha256(weights['train']) == spec(TRAIN_SPEC)['weights_sha256']
    assert sha256(weights['deploy']) == spec(DEPLOY_SPEC)['weights_sha256_lkm_deploy_py']


@pytest.mark.parametrize('deploy', [False, True])
def test_parameter_counts_and_names(deploy):
    """Official counts; official names, order and shapes (Paddle's Linear weights transposed, BN statistics
    renamed); the DWT filters are buffers, not parameters."""
    entries = load_entries(DEPLOY_SPEC if deploy else TRAIN_SPEC)
    dgf, fgf = (build_model('rvm', 'unireplknet', refiner=r, deploy=deploy)
                for r in ('deep_guided_filter', 'fast_guided_filter'))
    assert (parameters(dgf), parameters(fgf)) == (PARAMS[deploy], PARAMS[deploy] - DGF_PARAMS)
    linear = {k for k, v in dgf.state_dict().items() if '.pwconv' in k and k.endswith('.weight') and v.ndim == 2}
    assert len(linear) == 24
    expected = [(k, tuple(s[::-1]) if k in linear else tuple(s)) for k, s in to_paddle_names(
        {k: s for k, s, _ in entries}).items()]
    assert [(k, tuple(v.shape)) for k, v in dgf.state_dict().items()] == expected
    assert list(fgf.state_dict()) == [k for k, _ in expected if not k.startswith('refiner.')]
    assert not any('.wt.' in p.name for p in dgf.parameters())


def test_converter_detects_forms_and_transposes_linears(files, weights):
    assert 'rvm / unireplknet\n' in files['cli']['train'] and f"{PARAMS[False]:,}" in files['cli']['train']
    assert 'rvm / unireplknet, deploy form' in files['cli']['deploy'] and f"{PARAMS[True]:,}" in files['cli']['deploy']
    converted = paddle.load(files['train'])
    assert len(converted) == len(weights['train'])          # the DWT filter buffers kept, num_batches_tracked not
    for key in ('backbone.unirep.stages.1.0.pwconv1.1.weight', 'backbone.unirep.stages.3.1.pwconv2.0.weight'):
        np.testing.assert_array_equal(converted[key], weights['train'][key].T)
    np.testing.assert_array_equal(converted['decoder.down.wt.h1_row'], weights['train']['decoder.down.wt.h1_row'])


@pytest.mark.parametrize('ratio', [1, 0.5])
def test_training_form_matches_golden(files, ratio):
    """Odd sizes (127x211; 64x106 .. 8x14 through the stem, or 63x105 -> 32x53 .. 4x7), DWT zero padding,
    DGF at ratio 0.5."""
    assert_case(run(loaded(files['train']), GOLDEN['src_odd'], ratio), 'odd_ds1_' if ratio == 1 else 'odd_ds05_')


def test_fast_guided_filter_matches_golden(files):
    result = run(loaded(files['fgf'], 'fast_guided_filter'), GOLDEN['src_odd'], 0.5)
    assert_case(result, 'fgf_odd_ds05_')
    for k in range(1, 5):       # the same backbone and decoder as the DGF model
        assert_close(result[f'r{k}'], f'odd_ds05_r{k}')


def test_deploy_form_matches_golden(files):
    assert_case(run(loaded(files['deploy'], deploy=True), GOLDEN['src_odd'], 0.5), 'dep_odd_ds05_')


def test_own_reparameterization_is_the_deploy_form(files, weights):
    """MattingNetwork.reparameterize: the deploy network's state_dict (names, order, shapes), the reference
    folded weights, the golden deploy outputs; idempotent, also called layer by layer as the official loop."""
    model = loaded(files['train']).reparameterize()
    layout = [(k, v.shape) for k, v in MattingNetwork('unireplknet', deploy=True).state_dict().items()]
    assert [(k, v.shape) for k, v in model.state_dict().items()] == layout
    reference = to_paddle_names(weights['deploy'])
    for key, value in model.state_dict().items():
        expected = reference[key].T if value.ndim == 2 else reference[key]
        np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5, atol=2e-6 * np.abs(expected).max(), err_msg=key)
    before = {k: v.numpy() for k, v in model.state_dict().items()}
    for layer in [model] + model.sublayers():
        if hasattr(layer, 'reparameterize'):
            layer.reparameterize()
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].numpy(), value, err_msg=key)
    assert_case(run(model, GOLDEN['src_odd'], 0.5), 'dep_odd_ds05_')


def test_reparameterization_is_equivalent():
    """Random training-form weights (real initialisations, but layer scales, GRN and BatchNorms drawn at random:
    their initial values would make the folding trivial), a random clip: the folded network gives the same outputs
    and states."""
    paddle.seed(3)
    model = MattingNetwork('unireplknet')
    for name, p in model.named_parameters():
        if name.endswith(('.gamma', '.beta', '_variance')) or ('bn' in name or 'norm.' in name or 'pwconv2.2' in name):
            low = -0.1 if name.endswith(('_mean', '.bias', '.beta')) else 0.5
            p.set_value(paddle.uniform(p.shape, min=low, max=low + 0.6))
    model.eval()
    src = np.random.default_rng(0).random((1, 2, 3, 90, 118), dtype=np.float32)
    with paddle.no_grad():
        before = [t.numpy() for t in model(paddle.to_tensor(src), downsample_ratio=0.5)]
        model.reparameterize()
        after = [t.numpy() for t in model(paddle.to_tensor(src), downsample_ratio=0.5)]
    for b, a in zip(before, after):
        assert np.abs(a - b).max() <= 2e-5 * max(1, np.abs(b).max())


def test_sequence_equals_frame_by_frame(files):
    """A 5-D clip equals its 4-D frames with the states carried (the deploy form)."""
    model = loaded(files['deploy'], deploy=True)
    src = np.stack([GOLDEN['src_odd'], GOLDEN['src_odd'][:, :, ::-1]], axis=1)
    with paddle.no_grad():
        clip = [t.numpy() for t in model(paddle.to_tensor(src), downsample_ratio=0.5)]
    states = [None] * 4
    for t in range(2):
        frame = run(model, src[:, t], 0.5, states)
        states = [paddle.to_tensor(frame[f'r{k}']) for k in range(1, 5)]
        np.testing.assert_allclose(frame['pha'], clip[1][:, t], atol=1e-5)
    for k in range(4):
        np.testing.assert_allclose(states[k].numpy(), clip[2 + k], atol=1e-5)


def test_checkpoint_forms_are_detected(weights):
    for name, options in [('train', {'refiner': 'deep_guided_filter', 'deploy': False}),
                          ('fgf', {'refiner': 'fast_guided_filter', 'deploy': False}),
                          ('deploy', {'refiner': 'deep_guided_filter', 'deploy': True})]:
        _, model_type, backbone, found = families.detect(to_paddle_names(weights[name]))
        assert (model_type, backbone, found) == ('rvm', 'unireplknet', options), name
    deploy_fgf = [k for k in weights['deploy'] if not k.startswith('refiner.')]
    assert families.detect(deploy_fgf)[3] == {'refiner': 'fast_guided_filter', 'deploy': True}


def lkm_config(checkpoint, deploy, refiner='deep_guided_filter'):
    family = families.family_of('rvm')
    return config.ModelConfig(model_type='rvm', backbone='unireplknet', checkpoint=checkpoint, device='cpu',
                              family='rvm', options=family.options(refiner=refiner, deploy=deploy))


def test_forms_never_mix(files, weights, tmp_path):
    """A training checkpoint is refused by a deploy network and the other way round, naming the flag; an
    entry the network does not have is refused too (outside the refiner: a DGF checkpoint serves FGF)."""
    with pytest.raises(ValueError, match='does not fit rvm unireplknet: .* missing.*pass .* without --model-deploy'):
        families.load(lkm_config(files['train.pth'], deploy=True))
    with pytest.raises(ValueError, match='does not fit rvm unireplknet: .* missing.*pass .*unireplknet --model-deploy'):
        families.load(lkm_config(files['deploy'], deploy=False))
    hybrid = dict(weights['deploy'], **{'decoder.decode1.conv.0.origin_bn.weight': np.ones(32, np.float32)})
    with pytest.raises(ValueError, match='1 checkpoint entries not in the network .*origin_bn'):
        families.load(lkm_config(torch_checkpoint(hybrid, str(tmp_path / 'hybrid.pth')), deploy=True))
    families.load(lkm_config(files['train'], deploy=False, refiner='fast_guided_filter'))
    assert families.load(lkm_config(files['deploy.pth'], deploy=True)) is not None    # a .pth, converted on the fly


def test_reparameterize_tool(files, tmp_path, capsys):
    dst = str(tmp_path / 'rep.pdparams')
    assert reparameterize.main([files['train'], dst]) == 0
    assert f"{PARAMS[True]:,}" in capsys.readouterr().out
    folded, own = loaded(dst, deploy=True), loaded(files['train']).reparameterize()
    for (key, a), b in zip(folded.state_dict().items(), own.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=key)
    assert reparameterize.main([files['deploy'], str(tmp_path / 'again.pdparams')]) == 1
    assert 'already the deploy form' in capsys.readouterr().err


def test_static_graph_step_matches_dygraph(files):
    """The export form (paddle.jit.to_static, full graph, dynamic sizes) of the deploy network."""
    model = loaded(files['deploy'], deploy=True)
    step = paddle.jit.to_static(MattingNetworkStep(model, 0.5), input_spec=MattingNetworkStep.input_spec(),
                                full_graph=True)
    src = GOLDEN['src_odd']
    expected = run(model, src, 0.5)
    with paddle.no_grad():
        fgr, pha, *states = step(paddle.to_tensor(src), *[paddle.zeros([1, 1, 1, 1])] * 4)
    for name, value in zip(['fgr', 'pha', 'r1', 'r2', 'r3', 'r4'], [fgr, pha, *states]):
        assert_close(value.numpy(), 'dep_odd_ds05_' + name, expected[name])


def test_fast_backend_matches_dygraph(files):
    """Paddle Inference on the exported legacy graph (oneDNN) of the deploy form's MattingNetworkCoefficients, the
    OpenCV ends around it, two frames with the states carried (the path predict.py takes for videos on CPU)."""
    from families.rvm import RVMRunner
    from test_rvm_fast import fast_runner
    model = loaded(files['deploy'], deploy=True)
    frames = np.stack([GOLDEN['src_odd'][0].transpose(1, 2, 0)] * 2)
    frames[1] = frames[1][::-1]
    expected, out = RVMRunner(model, 0.5, 'fp32')(frames), fast_runner(model, 'inference', 0.5)(frames)
    for name in ('pha', 'fgr'):
        np.testing.assert_allclose(out[name], expected[name], atol=1e-4, err_msg=name)


def test_deploy_is_for_unireplknet_only():
    with pytest.raises(ValueError, match='deploy'):
        MattingNetwork('mobilenetv3', deploy=True)
    with pytest.raises(ValueError, match='--model-deploy is for --model-backbone unireplknet'):
        build_model('rvm', 'resnet50', deploy=True)
