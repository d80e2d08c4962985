"""Evaluation protocols side by side: `image` (BGMv2 composites, DIM metrics), `video` (RVM clips, video
metrics), `trimap` (IndexNet, test images with trimaps) and `davis` (STCN / IMSFR, DAVIS J&F), each
`evaluate(cfg, settings, make_runner=None, plates=False)`. A family lists the protocols it
supports (families/); eval.py chooses one and calls it."""
import os

from . import davis, images, trimap, video

PROTOCOLS = {'image': images, 'trimap': trimap, 'video': video, 'davis': davis}


def settings(cfg, model=None):
    """What the numbers depend on (a rerun into the same output folder must match it to resume): the protocol's
    options and the model's description (families.describe), or the prediction folder."""
    common = {'protocol': cfg.protocol, 'data_dir': cfg.data_dir}
    if cfg.protocol == 'image':
        common.update(trimap_radius=cfg.trimap_radius, resolution=cfg.resolution)
    elif cfg.protocol == 'video':
        common.update(hr=cfg.hr)
    elif cfg.protocol == 'davis':
        common.update(image_set=cfg.image_set)
    if model is None:
        return {'mode': 'pred', 'pred_dir': os.path.abspath(cfg.pred_dir), **common}
    run = {'image': {'bgr_dir': cfg.bgr_dir, 'seed': cfg.seed, 'augment': cfg.augment,
                     'plate_shift': cfg.plate_shift, 'plate_noise': cfg.plate_noise},
           'video': {'seq_chunk': cfg.seq_chunk},
           'trimap': {}, 'davis': {}}[cfg.protocol]
    return {'mode': 'model', **model, **run, **common}
