"""Rebuild tests/data/vos/golden.npz and tolerances.json from the full golden set (shared/golden/vos), and the crops
that tests/test_vos.py compares: `python3 tests/data/vos/make_subset.py /path/to/shared/golden/vos`.

Images are stored as the 8-bit values they were made from (IMAGENET-normalising them again in float32 gives the
golden floats bit for bit); one-hot masks as uint8; a whole clip's prob without its background channel (the
background is 1 - the sum of the objects' channels to within 1.5e-7); module-level outputs as channel / centre
crops (CROPS). The networks' weights are not stored: the key specs rebuild them (tests/seeded.py).
"""
import json
import os
import shutil
import sys

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
CHANNELS = (slice(None), slice(0, 64))                       # the first 64 channels of B x C x ... arrays
CENTRE = (slice(None), slice(None), slice(24, 72), slice(40, 120))   # the centre of the 96 x 160 maps
CROPS = {
    'ek_k16': (), 'ek_f16_thin': CHANNELS, 'ek_f16': CHANNELS, 'ek_f8_frame2': CHANNELS,
    'ek_f4_frame2': (slice(None), slice(0, 16)),
    'ev_value0': CHANNELS, 'ev_value1': CHANNELS, 'ev_valuepe0': CHANNELS, 'ev_valuepe1': CHANNELS,
    'mm_readout': CHANNELS, 'mm_long': CHANNELS, 'mm_first': CHANNELS, 'mm_local': CHANNELS, 'dec_in': CHANNELS,
    'seg_prob': CENTRE, 'seg_logits': CENTRE, 'agg_prob': CENTRE,
}
OBJECTS = (slice(1, None),)                                   # prob without the background channel
SHARED = ('ek_f8_frame2', 'ek_f4_frame2')     # bit-identical in the two files (the key encoders share layer1-2)


def normalise(u8):
    """uint8 ... x 3 x H x W -> the ImageNet-normalised float32 frames of the golden data (ToTensor + Normalize)."""
    return (u8.astype(np.float32) / np.float32(255) - MEAN) / STD


def to_u8(frames):
    u8 = np.round((frames * STD + MEAN) * 255).astype(np.uint8)
    assert np.array_equal(normalise(u8), frames)
    return u8


def main(golden):
    here = os.path.dirname(os.path.abspath(__file__))
    out, tolerances = {}, {}
    with open(os.path.join(golden, 'tolerances.json'), encoding='utf-8') as f:
        tol = json.load(f)['files']
    for net in ('stcn', 'imsfr'):
        g = np.load(os.path.join(golden, f'{net}_golden.npz'))
        t = tol[f'{net}_golden.npz']
        if net == 'stcn':
            for name in SHARED:
                assert np.array_equal(g[name], np.load(os.path.join(golden, 'imsfr_golden.npz'))[name])
            out['frames_u8'], out['masks0'], out['masks1'] = to_u8(g['frames']), g['masks0'], g['masks1']
        for name, crop in CROPS.items():
            if name in g.files:
                out[name if name in SHARED else f'{net}_{name}'] = np.ascontiguousarray(g[name][crop])
        for case in ('clip_', 'clipil_', 'rand_'):
            if case + 'config' not in g.files:
                continue
            config = json.loads(str(g[case + 'config']))
            out[f'{net}_{case}config'] = g[case + 'config']
            out[f"{net}_{config['images']}_u8"] = to_u8(g[config['images']])     # clipil_ reads clip_images
            mask0 = g[config['mask0']]
            assert np.array_equal(mask0.astype(np.uint8), mask0)
            out[f"{net}_{config['mask0']}_u8"] = mask0.astype(np.uint8)
            out[f'{net}_{case}objects_prob'] = np.ascontiguousarray(g[case + 'prob'][OBJECTS])
            for name in ('pad', 'masks') + (('random_samples',) if case == 'rand_' else ()):
                out[f'{net}_{case}{name}'] = g[case + name]
        tolerances.update({f'{net}_{k}': [v['recommended_max_abs'], v['recommended_mean_abs']] for k, v in t.items()})
        shutil.copy(os.path.join(golden, f'{net}_keys.json'), here)
    np.savez_compressed(os.path.join(here, 'golden.npz'), **out)
    with open(os.path.join(here, 'tolerances.json'), 'w', encoding='utf-8') as f:
        json.dump({'source': 'shared/golden/vos/tolerances.json: [recommended_max_abs, recommended_mean_abs]',
                   'tolerances': tolerances}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1])
