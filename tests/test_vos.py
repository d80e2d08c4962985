"""STCN and IMSFR parity with the official PyTorch evaluation networks and inference cores, through this project's
converter: module-level calls, whole clips (STCN with include_last, IMSFR's seeded random memory sampling), masks,
padding; parameter counts, checkpoint detection, the memory readout against a numpy softmax_w_top.
Golden vectors: tests/data/vos (a cropped subset of shared/golden/vos, seeded weights)."""
import collections
import importlib.util
import json
import os
import random
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import families
from conftest import DATA, ROOT, build_model
from model import IMSFR, STCN, IMSFRMemoryBank, InferenceCore, MemoryBank, aggregate
from model import vos
from seeded import load_entries, make_weights
from torch_writer import save_torch_zip
from utils.checkpoint import load_state_dict

GOLDEN_DIR = os.path.join(DATA, 'vos')
GOLDEN = np.load(os.path.join(GOLDEN_DIR, 'golden.npz'))
with open(os.path.join(GOLDEN_DIR, 'tolerances.json'), encoding='utf-8') as f:
    TOLERANCES = json.load(f)['tolerances']
NETS = {'stcn': STCN, 'imsfr': IMSFR}
BACKBONE = {'stcn': 'resnet50', 'imsfr': 'resnet101'}
# shared/golden/vos/README.md, counted on the official networks (IMSFR with its unused mask2)
PARAMS = {'stcn': 54_434_180, 'imsfr': 91_844_420}
CLIPS = [('stcn', 'clip_'), ('stcn', 'clipil_'), ('imsfr', 'clip_'), ('imsfr', 'rand_')]


def subset_module():
    """tests/data/vos/make_subset.py: the crops of the stored arrays and the image normalisation."""
    found = importlib.util.spec_from_file_location('vos_subset', os.path.join(GOLDEN_DIR, 'make_subset.py'))
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


SUBSET = subset_module()


def spec_path(net):
    return os.path.join(GOLDEN_DIR, f'{net}_keys.json')


def golden(net, name):
    return GOLDEN[f'{net}_{name}'] if f'{net}_{name}' in GOLDEN.files else GOLDEN[name]


def within(net, name, got, ref=None, crop=None):
    """Both criteria of the golden tolerances (max and mean absolute error) on the stored crop; returns the worse
    of the two error / tolerance ratios."""
    got = got.numpy() if hasattr(got, 'numpy') else got
    got = np.asarray(got[SUBSET.CROPS[name] if crop is None else crop], np.float64)
    ref = golden(net, name) if ref is None else ref
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    err = np.abs(got - ref)
    max_tol, mean_tol = TOLERANCES[f'{net}_{name}']
    assert err.max() <= max_tol and err.mean() <= mean_tol, \
        f'{net} {name}: max {err.max():.3g} (tolerance {max_tol:.3g}), mean {err.mean():.3g} ({mean_tol:.3g})'
    return max(err.max() / max_tol, err.mean() / mean_tol)


def torch_checkpoint(weights, path, wrap=False):
    """A state_dict as torch saves it (int64 num_batches_tracked after each BatchNorm), written without torch;
    `wrap`: nested in {'state_dict': ...} with a DDP 'module.' prefix."""
    sd = collections.OrderedDict()
    for key, value in weights.items():
        sd[key] = value
        if key.endswith('running_var'):
            sd[key[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
    if wrap:
        sd = {'state_dict': collections.OrderedDict(('module.' + k, v) for k, v in sd.items()), 'epoch': 3}
    save_torch_zip(sd, path)
    return path


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """{net: (.pdparams written by tools/convert_weights.py, its output, the two CBAM Linear weights in torch's
    layout)} from seeded official-style .pth files (IMSFR's wrapped, as training scripts save it)."""
    folder = tmp_path_factory.mktemp('vos')
    out = {}
    for net in NETS:
        weights = make_weights(load_entries(spec_path(net)))
        linear = {k: v for k, v in weights.items() if 'ChannelGate.mlp' in k and k.endswith('weight')}
        src = torch_checkpoint(weights, str(folder / f'{net}.pth'), wrap=net == 'imsfr')
        del weights
        dst = str(folder / f'{net}.pdparams')
        result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), src, dst],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        out[net] = dst, result.stdout, linear
        os.remove(src)
    return out


@pytest.fixture(scope='module')
def nets(converted):
    """The checker's recipe: set_state_dict(paddle.load(converted)), nothing missing or unexpected, eval mode."""
    out = {}
    for net, (path, _, _) in converted.items():
        model = NETS[net]()
        missing, unexpected = model.set_state_dict(paddle.load(path))
        assert not missing and not unexpected, (missing[:3], unexpected[:3])
        model.eval()
        out[net] = model
    return out


def trainable(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


@pytest.mark.parametrize('net', list(NETS))
def test_parameter_counts_and_conversion(net, converted):
    model = build_model(net, BACKBONE[net])
    assert isinstance(model, NETS[net]) and trainable(model) == PARAMS[net]
    path, stdout, linear = converted[net]
    assert f'{net} / {BACKBONE[net]}' in stdout and f'parameters: {PARAMS[net]:,}' in stdout
    written = paddle.load(path)
    assert list(written) == list(model.state_dict())
    for key, value in linear.items():          # CBAM's nn.Linear: torch (out, in) -> paddle (in, out)
        np.testing.assert_array_equal(np.asarray(written[key]), value.T, err_msg=key)


def test_checkpoint_detection_and_pairings(converted, tmp_path):
    for net in NETS:
        family, model_type, backbone, options = families.detect(load_state_dict(converted[net][0]))
        assert (family.name, model_type, backbone, options) == ('vos', net, BACKBONE[net], {})
    for net, other in (('stcn', 'resnet101'), ('imsfr', 'resnet50')):
        with pytest.raises(ValueError, match=f'--model-backbone {BACKBONE[net]}'):
            build_model(net, other)
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), converted['stcn'][0],
                             str(tmp_path / 'x.pdparams'), '--model-backbone', 'resnet101'],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and 'pass --model-backbone resnet50' in result.stderr


@pytest.mark.parametrize('net', list(NETS))
def test_module_level(net, nets):
    """encode_key, encode_value(pe), match_memory, segment_with_query (its decoder input), decoder, aggregate on the
    golden frames and masks, each call on the previous calls' outputs (the golden data feeds golden inputs to every
    call; the chain adds this port's own float noise and stays well within the tolerances)."""
    model, imsfr = nets[net], net == 'imsfr'
    frames = paddle.to_tensor(SUBSET.normalise(GOLDEN['frames_u8']))
    masks = [paddle.to_tensor(GOLDEN[f'masks{i}']) for i in (0, 1)]
    with paddle.no_grad():
        k16, f16_thin, f16, f8, f4 = model.encode_key(frames)
        if not imsfr:
            within(net, 'ek_k16', k16)
        within(net, 'ek_f16_thin', f16_thin)
        within(net, 'ek_f16', f16)
        within(net, 'ek_f8_frame2', f8[2:3])
        within(net, 'ek_f4_frame2', f4[2:3])
        bank = (IMSFRMemoryBank if imsfr else MemoryBank)(2, top_k=20)
        for i in (0, 1):
            inputs = (frames[i:i + 1],) + ((frames[i + 1:i + 2],) if imsfr else ()) + (f16[i:i + 1], masks[i])
            value = model.encode_value(*inputs)
            within(net, f'ev_value{i}', value)
            if imsfr:
                valuepe = model.encode_valuepe(*inputs)
                within(net, f'ev_valuepe{i}', valuepe)
                bank.add_memory(k16[i:i + 1].unsqueeze(2), value, valuepe)
            else:
                bank.add_memory(k16[i:i + 1].unsqueeze(2), value)
        readout = bank.match_memory(k16[2:3])
        for name, r in zip(('mm_long', 'mm_first', 'mm_local') if imsfr else ('mm_readout',),
                           readout if imsfr else (readout,)):
            within(net, name, r)
        captured = {}
        hook = model.decoder.register_forward_pre_hook(lambda layer, inputs: captured.update(dec_in=inputs[0]))
        try:
            prob = model.segment_with_query(bank, f8[2:3], f4[2:3], k16[2:3], f16_thin[2:3])
        finally:
            hook.remove()
        within(net, 'seg_prob', prob)
        if imsfr:
            within(net, 'dec_in', captured['dec_in'])
        else:
            np.testing.assert_array_equal(captured['dec_in'].numpy()[:, :512], readout.numpy())
        within(net, 'seg_logits', model.decoder(captured['dec_in'], f8[2:3], f4[2:3]))
        within(net, 'agg_prob', aggregate(prob, keep_bg=True))


def eval_masks(prob, pad, size):
    """The eval script's labels: unpad, bilinear to the frame size, argmax over background + objects."""
    out = []
    for ti in range(prob.shape[1]):
        p = F.interpolate(vos.unpad(prob[:, ti], pad), size=size, mode='bilinear', align_corners=False)
        out.append(paddle.argmax(p[:, 0], axis=0).numpy().astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize('net,case', CLIPS)
def test_whole_clip(net, case, nets):
    """InferenceCore(...).interact(mask0, 0, T): prob at the padded size (background = 1 - objects for the golden
    one, to within 1.5e-7), pad exactly, the argmax masks up to near-ties of the golden probabilities."""
    config = json.loads(str(golden(net, case + 'config')))
    images = paddle.to_tensor(SUBSET.normalise(golden(net, config['images'] + '_u8')))
    mask0 = paddle.to_tensor(golden(net, config['mask0'] + '_u8').astype(np.float32))
    if config['python_random_seed'] is not None:
        random.seed(config['python_random_seed'])
    core = InferenceCore(nets[net], images, config['K'], top_k=config['top_k'], mem_every=config['mem_every'],
                         include_last=config['include_last'])
    core.interact(mask0, 0, config['T'])
    objects = golden(net, case + 'objects_prob')
    ref = np.concatenate([1 - objects.sum(0, keepdims=True, dtype=np.float64), objects], axis=0)
    assert core.prob.dtype == paddle.float32
    within(net, case + 'prob', core.prob, ref, crop=())
    assert tuple(int(p) for p in core.pad) == tuple(golden(net, case + 'pad').tolist())
    ref_masks = golden(net, case + 'masks')
    masks = eval_masks(core.prob, core.pad, ref_masks.shape[1:])
    top2 = np.sort(vos.unpad(ref, core.pad)[:, :, 0], axis=0)[-2:]
    flipped = masks != ref_masks
    assert not np.any(flipped & (top2[1] - top2[0] > 2 * TOLERANCES[f'{net}_{case}prob'][0])), flipped.sum()
    if case == 'rand_':        # the lists random.sample returned, one per query frame with more than 10 memories
        assert core.mem_bank.samples == [[x for x in row if x >= 0] for row in golden(net, 'rand_random_samples')]


def softmax_w_top_reference(mk, mv, qk, top_k):
    """numpy float64: the official dense softmax_w_top affinity (exp of the top-k values, no max subtracted,
    normalised, zeros elsewhere) times the values."""
    affinity = (2 * mk[0].T @ qk[0] - (mk[0] ** 2).sum(0)[:, None]) / np.sqrt(mk.shape[1])   # NE x HW
    top = np.argsort(-affinity, axis=0, kind='stable')[:top_k]
    dense = np.zeros_like(affinity)
    weights = np.exp(np.take_along_axis(affinity, top, 0))
    np.put_along_axis(dense, top, weights / weights.sum(0, keepdims=True), 0)
    return mv @ dense


def test_chunked_top_k_readout_is_softmax_w_top(monkeypatch):
    rng = np.random.default_rng(0)
    mk, qk = rng.standard_normal((1, 8, 90)), rng.standard_normal((1, 8, 37))
    mv = rng.standard_normal((3, 5, 90))
    ref = softmax_w_top_reference(mk, mv, qk, 7)
    monkeypatch.setattr(vos, 'CHUNK_ELEMENTS', 1000)         # 9 query positions per chunk: 5 chunks
    got = vos.top_k_readout(*(paddle.to_tensor(a.astype(np.float32)) for a in (mk, mv, qk)), 7).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='top-k 91 needs at least 91 memory positions, the memory has 90'):
        vos.top_k_readout(*(paddle.to_tensor(a.astype(np.float32)) for a in (mk, mv, qk)), 91)


def test_padding_helpers():
    assert vos.pad_sizes(90, 153) == (3, 4, 3, 3) and vos.pad_sizes(60, 90) == (3, 3, 2, 2)
    assert vos.pad_sizes(480, 854) == (5, 5, 0, 0) and vos.pad_sizes(64, 96) == (0, 0, 0, 0)
    x = paddle.to_tensor(np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(1, 2, 3, 5, 7))
    padded, pad = vos.pad_divide_by(x, 16)
    assert padded.shape == [1, 2, 3, 16, 16] and pad == (4, 5, 5, 6)
    assert float(padded.abs().sum()) == float(x.abs().sum())
    np.testing.assert_array_equal(vos.unpad(padded, pad).numpy(), x.numpy())


def test_imsfr_refusals(nets):
    with pytest.raises(ValueError, match='include_last'):         # the official core fails there
        InferenceCore(nets['imsfr'], paddle.zeros([1, 2, 3, 32, 32]), 1, include_last=True)
    with pytest.raises(ValueError, match='at least 2 frames'):
        InferenceCore(nets['imsfr'], paddle.zeros([1, 1, 3, 32, 32]), 1)
    with pytest.raises(families.Unavailable, match='no single forward pass'):
        families.FAMILIES['vos'].outputs('imsfr')
    with pytest.raises(ValueError, match='no temporary memory'):
        IMSFRMemoryBank(1).add_memory(paddle.zeros([1, 8, 1, 2, 2]), paddle.zeros([1, 4, 1, 2, 2]),
                                      paddle.zeros([1, 4, 1, 2, 2]), is_temp=True)
