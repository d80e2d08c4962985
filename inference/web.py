"""The web demo's page (Gradio): a form whose every field is a predict.py option, so the page gives exactly what
predict.py gives for the same inputs. `build(matte, checkpoints)` returns the Blocks; `matte(argv)` (app.py) runs
predict.py's flow for an argument list and returns its output folder.

Uploads are taken as files (gr.File), byte for byte: an image component would re-encode them. One request runs at
a time (the others queue); video progress follows predict.py's progress bar. Nothing is fetched from the internet:
no analytics, system fonts only.
"""
import glob
import os
import shutil
import tempfile

import numpy as np

import families
from utils.io import read_alpha_u8, read_image, write_image

REFINE_MODES = ('sampling', 'thresholding', 'full')
TRIMAP_LEVELS = np.array([0, 128, 255])


def drawn_trimap(editor, shape):
    """A trimap painted in the editor (black background, gray unknown, white foreground strokes over the photo):
    the stroke layers' colours snapped to 0/128/255; unpainted pixels are background."""
    trimap = np.zeros(shape, np.uint8)
    for layer in (editor or {}).get('layers') or []:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4 or layer.shape[:2] != shape:
            continue
        painted = layer[..., 3] > 0
        gray = layer[..., :3].mean(axis=2)
        trimap[painted] = TRIMAP_LEVELS[np.abs(gray[painted, None] - TRIMAP_LEVELS).argmin(axis=1)]
    return trimap


def arguments(form, work):
    """The predict.py arguments of a submitted form (files copied into `work`, keeping their names, so that a
    photo and its plate pair by name as predict.py pairs them). Empty fields are left to predict.py's defaults;
    fields of another family (hidden on the page, perhaps filled before the model type changed) are ignored."""
    source = form['source']
    if not source:
        raise ValueError('upload a photo or a video first')
    shown = shown_fields(form['model_type'])
    src = os.path.join(work, 'src', os.path.basename(source))
    os.makedirs(os.path.dirname(src))
    shutil.copyfile(source, src)
    argv = ['--src', src, '--output-dir', os.path.join(work, 'out'), '-y', '--model-type', form['model_type']]
    if shown['plate'] and form['plate']:
        plate = os.path.join(work, 'bgr', os.path.basename(form['plate']))
        os.makedirs(os.path.dirname(plate))
        shutil.copyfile(form['plate'], plate)
        argv += ['--bgr', plate]
    if shown['trimap']:
        trimap = os.path.join(work, 'trimap.png')
        if form['trimap']:
            write_image(trimap, read_alpha_u8(form['trimap']))        # any format in, a lossless PNG out
        else:
            write_image(trimap, drawn_trimap(form['drawn_trimap'], read_image(src).shape[:2]))
        argv += ['--trimap', trimap]
    if form['background']:
        argv += ['--target-bgr', form['background']]
    elif form['colour']:
        argv += ['--target-bgr', form['colour']]
    options = [('--model-backbone', 'backbone', True), ('--model-checkpoint', 'checkpoint', True),
               ('--model-backbone-scale', 'backbone_scale', shown['bgmv2_options']),
               ('--model-refine-mode', 'refine_mode', shown['bgmv2_options']),
               ('--model-refine-sample-pixels', 'sample_pixels', shown['bgmv2_options']),
               ('--downsample-ratio', 'downsample_ratio', shown['rvm_options'])]
    for flag, key, used in options:
        value = form.get(key)
        if used and value not in (None, '', 0):
            argv += [flag, str(int(value) if key == 'sample_pixels' else value)]
    if shown['align'] and form['align']:
        argv.append('--preprocess-alignment')
    return argv + ['--output-types', 'com', 'pha', 'fgr']


def results(out, work):
    """(composite, alpha, foreground image paths or None, videos, downloads) of predict.py's output folder; the
    downloads are copies named <input>_<type>.<ext> (predict.py names them by folder)."""
    files = sorted(p for p in glob.glob(os.path.join(out, '**', '*'), recursive=True) if os.path.isfile(p))
    downloads = []
    for path in files:
        kind = os.path.basename(os.path.dirname(path)) if path.endswith('.png') else os.path.splitext(
            os.path.basename(path))[0]
        stem = os.path.splitext(os.path.basename(path))[0] if path.endswith('.png') else os.path.basename(
            os.path.dirname(path))
        target = os.path.join(work, 'download', f'{stem}_{kind}{os.path.splitext(path)[1]}')
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target)
        downloads.append(target)
    pick = lambda kind: next((p for p in files if p.endswith('.png') and  # noqa: E731
                              os.path.basename(os.path.dirname(p)) == kind), None)
    return [pick(kind) for kind in ('com', 'pha', 'fgr')], [p for p in files if p.endswith('.mp4')], downloads


def shown_fields(model_type):
    """Which optional fields a model type uses: its family's partner input (plate or trimap) and options."""
    spec = families.family_of(model_type)
    bgmv2 = spec.partner == 'bgr'
    return {'plate': bgmv2, 'align': bgmv2, 'trimap': spec.partner == 'trimap', 'bgmv2_options': bgmv2,
            'rvm_options': spec.name == 'rvm', 'backbones': spec.backbones}


def build(matte, checkpoints):
    """The Blocks of the demo. `matte(argv) -> output folder` may raise ValueError (shown as the error)."""
    import gradio as gr

    finished = []

    def run(model_type, backbone, checkpoint, backbone_scale, refine_mode, sample_pixels, downsample_ratio, align,
            colour, background, source, plate, trimap, drawn, progress=gr.Progress(track_tqdm=True)):
        form = dict(model_type=model_type, backbone=backbone, checkpoint=checkpoint, backbone_scale=backbone_scale,
                    refine_mode=refine_mode, sample_pixels=sample_pixels, downsample_ratio=downsample_ratio,
                    align=align, colour=colour, background=background, source=source, plate=plate, trimap=trimap,
                    drawn_trimap=drawn)
        for done in finished:                  # the previous request's files: Gradio has its own copies by now
            shutil.rmtree(done, ignore_errors=True)
        finished[:] = [tempfile.mkdtemp(prefix='matting-web-')]
        work = finished[0]
        try:
            out = matte(arguments(form, work))
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None
        (com, pha, fgr), videos, files = results(out, work)
        video = next((v for v in videos if os.path.basename(v) == 'com.mp4'), None)
        return com, pha, fgr, gr.update(value=video, visible=video is not None), files, f'{len(files)} files written'

    def follow(model_type):
        shown = shown_fields(model_type)
        return (gr.update(choices=[''] + list(shown['backbones']), value=''),
                *(gr.update(visible=shown[key]) for key in ('plate', 'align', 'trimap', 'trimap', 'bgmv2_options',
                                                            'bgmv2_options', 'bgmv2_options', 'rvm_options')))

    with gr.Blocks(title='Matting', delete_cache=(3600, 3600)) as demo:    # served copies live an hour
        gr.Markdown('## Matting\nA photo and its background plate (BGMv2), a video alone (Robust Video Matting), '
                    'or a photo and its trimap (IndexNet). Every field is an option of `predict.py`; empty fields '
                    'take its defaults.')
        with gr.Row():
            model_type = gr.Dropdown(list(families.MODEL_TYPES), value='mattingrefine', label='model type',
                                     elem_id='model-type')
            backbone = gr.Dropdown([''] + list(shown_fields('mattingrefine')['backbones']), value='',
                                   label='backbone (empty: the family default)', elem_id='backbone')
            checkpoint = gr.Dropdown([''] + checkpoints, value='', allow_custom_value=True,
                                     label='checkpoint (empty: the demo model; or type a path)', elem_id='checkpoint')
        with gr.Accordion('options', open=False):
            with gr.Row():
                backbone_scale = gr.Number(None, label='backbone scale (BGMv2)', minimum=0, maximum=0.5)
                refine_mode = gr.Dropdown([''] + list(REFINE_MODES), value='', label='refine mode (BGMv2)')
                sample_pixels = gr.Number(None, label='refine sample pixels (BGMv2)', minimum=0, precision=0)
                downsample_ratio = gr.Number(None, label='downsample ratio (RVM; empty: automatic)', minimum=0,
                                             maximum=1, visible=False)
        with gr.Row():
            source = gr.File(label='photo or video', type='filepath', elem_id='source')
            plate = gr.File(label='background plate (BGMv2): a picture or a video', type='filepath', elem_id='plate')
            trimap = gr.File(label='trimap (IndexNet): 0 background, 128 unknown, 255 foreground', type='filepath',
                             elem_id='trimap', visible=False)
        with gr.Row():
            align = gr.Checkbox(False, label='align the plate to the photo (hand-held captures)', elem_id='align')
            colour = gr.ColorPicker(None, label='composite over this colour (empty: transparent)', elem_id='colour')
            background = gr.File(label='or over this picture', file_types=['image'], type='filepath',
                                 elem_id='background')
        with gr.Accordion('or draw the trimap (IndexNet): white foreground, gray unknown, black background',
                          open=False, visible=False) as drawing:
            drawn = gr.ImageEditor(type='numpy', label='trimap strokes', elem_id='drawn-trimap',
                                   brush=gr.Brush(colors=['#ffffff', '#808080', '#000000'], color_mode='fixed'))
        button = gr.Button('Matte', variant='primary', elem_id='run')
        status = gr.Markdown(elem_id='status')
        with gr.Row():
            com = gr.Image(label='composite', format='png', type='filepath', elem_id='com', interactive=False)
            pha = gr.Image(label='alpha', format='png', type='filepath', elem_id='pha', interactive=False)
            fgr = gr.Image(label='foreground', format='png', type='filepath', elem_id='fgr', interactive=False)
        video = gr.Video(label='composite video', elem_id='video', interactive=False, visible=False)
        files = gr.File(label='download', file_count='multiple', elem_id='files', interactive=False)
        button.click(run, [model_type, backbone, checkpoint, backbone_scale, refine_mode, sample_pixels,
                           downsample_ratio, align, colour, background, source, plate, trimap, drawn],
                     [com, pha, fgr, video, files, status], concurrency_limit=1)
        model_type.change(follow, model_type, [backbone, plate, align, trimap, drawing, backbone_scale, refine_mode,
                                               sample_pixels, downsample_ratio])
    return demo
