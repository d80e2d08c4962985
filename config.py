"""Configuration resolved once: command-line arguments (and a checkpoint's card) -> frozen, typed objects.

Every option is declared once, as a field of a dataclass here or of a family's options (families/), with its
flag, default and help. `add_options` turns the fields into argparse arguments whose help ends with the default
('(default: X)'); argparse itself keeps None, so `resolve_*` can tell what the user gave from what it fills in:
the command line first, then the checkpoint's card (`<checkpoint>.json`, written by train.py and shipped with
the demo model), then a tool's own documented default (`overrides`), then the field's default. Libraries get
these objects or plain values, never an argparse namespace.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import families
from utils.device import usable_cpus
from utils.options import checked, non_negative_int, option, positive_int

ROOT = os.path.dirname(os.path.abspath(__file__))
CPUS = usable_cpus()                        # read once: the cgroup files behind it do not change
DEFAULT_MODEL_TYPE = 'mattingrefine'
OUTPUT_TYPES = ('com', 'pha', 'fgr', 'err', 'ref')


def show(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (tuple, list)):
        return ' '.join(map(str, value))
    return 'none' if value is None else str(value)


def add_options(parser, cls, title=None, defaults=None, aliases=None, default_help=None):
    """Add the option fields of dataclass `cls` to `parser` (in a group `title`); `defaults` are a tool's own
    defaults (shown in --help), `aliases` extra flags {field: [flag, ...]}, `default_help` {field: text} the
    text of defaults that vary. A flag the parser has already (the learning rates several training tasks share)
    is not added again: its help gains this class's default."""
    group = parser.add_argument_group(title) if title else parser
    existing = parser._option_string_actions
    defaults, aliases, default_help_of = defaults or {}, aliases or {}, default_help or {}
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        if 'flag' not in meta:
            continue
        flags = [meta.pop('flag')] + list(meta.pop('aliases', ())) + list(aliases.get(f.name, ()))
        default = defaults.get(f.name, f.default)
        text = meta.pop('help')
        default_help = default_help_of.get(f.name, meta.pop('default_help', None))
        meta.pop('default_help', None)
        if f.name in defaults:              # the tool's own default replaces the field's
            default_help = None
        if flags[0] in existing:
            shared = existing[flags[0]]
            shared.help = shared.help[:-1] + f', {default_help or show(default)})'
            continue
        if meta.get('required'):
            text += ' (required)'
        elif meta.get('action') == 'store_true':
            pass                                   # a switch: off unless given
        elif default_help is not None:
            text += f' (default: {default_help.format(default=show(default))})'
        else:
            text += f' (default: {show(default)})'
        group.add_argument(*flags, dest=f.name, default=None, help=text, **meta)
    return group


def fill(cls, args, defaults=None, **values):
    """An instance of `cls`: each option field from `args` when given, else from `defaults`, else its default;
    `values` set fields directly."""
    defaults = defaults or {}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = values[f.name]
            continue
        given = getattr(args, f.name, None) if 'flag' in f.metadata else None
        value = given if given is not None else defaults.get(f.name, f.default)
        if f.metadata.get('action') == 'store_true' and value is None:
            value = False
        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def given(args, cls):
    """Flags of `cls` the user gave."""
    return [f.metadata['flag'] for f in dataclasses.fields(cls)
            if 'flag' in f.metadata and getattr(args, f.name, None) is not None]


# ---------------------------------------------------------------- the model

def default_device():
    import paddle
    return 'gpu' if paddle.device.is_compiled_with_cuda() else 'cpu'


def _family_defaults(attribute):
    return ', '.join(f"{f.name} {getattr(f, attribute)}" for f in families.FAMILIES.values())


def _backbone_defaults():
    """'bgmv2 mobilenetv2, ..., stcn resnet50, imsfr resnet101': per family, or per model type where they differ."""
    parts = []
    for f in families.FAMILIES.values():
        chosen = {t: f.backbone_for(t) for t in f.model_types}
        parts += [f"{f.name} {f.default_backbone}"] if len(set(chosen.values())) == 1 else \
            [f"{t} {b}" for t, b in chosen.items()]
    return ', '.join(parts)


@dataclass(frozen=True)
class ModelConfig:
    """Which network, its weights and where it runs; `options` is the family's options dataclass."""
    model_type: str = option(DEFAULT_MODEL_TYPE, '--model-type', choices=families.MODEL_TYPES,
                             help='the network: ' + '; '.join(f"{', '.join(f.model_types)} ({f.title})"
                                                              for f in families.FAMILIES.values()),
                             default_help=f"{DEFAULT_MODEL_TYPE}, or the checkpoint's card")
    backbone: str = option(None, '--model-backbone', choices=families.BACKBONES,
                           help='encoder: ' + '; '.join(f"{', '.join(f.backbones)} for {f.name}"
                                                        for f in families.FAMILIES.values()),
                           default_help=_backbone_defaults() +
                           ", or the checkpoint's card")
    checkpoint: Optional[str] = option(None, '--model-checkpoint', metavar='PATH',
                                       help='weights: a .pdparams of this project or an official PyTorch .pth '
                                            '(converted on the fly, no torch needed)',
                                       default_help='the demo model shipped in model/weights/ (BGMv2 '
                                                    'mobilenetv2, trained by this project on a small demo set; '
                                                    'not the official weights)')
    device: str = option(None, '--device', choices=('cpu', 'gpu'), help='where to run',
                         default_help='gpu when Paddle is built with CUDA, else cpu')
    cpu_kernels: str = option('onednn', '--cpu-kernels', choices=('onednn', 'paddle'),
                              help="the kernels of convolutions and bilinear resizes in dygraph on CPU (training, "
                                   "the dygraph backend): oneDNN, the library inside Paddle's wheel (1.5-7x "
                                   "faster, on every core or OMP_NUM_THREADS when above 1; Paddle's own when it "
                                   "cannot load), or Paddle's own")
    family: str = None
    options: object = None

    @property
    def spec(self):
        return families.FAMILIES[self.family]


def add_model_options(parser, overrides=None, aliases=None, demo=True):
    """--model-type, --model-backbone, --model-checkpoint, --device and every family's model options; `demo`
    as in resolve_model."""
    shown = {'device': f'{default_device()}: gpu when Paddle is built with CUDA, else cpu'}
    if not demo:
        shown['checkpoint'] = 'none: random weights'
    add_options(parser, ModelConfig, 'model', aliases=aliases, default_help=shown)
    for spec in families.FAMILIES.values():
        if dataclasses.fields(spec.options):
            add_options(parser, spec.options, f'{spec.name} model ({", ".join(spec.model_types)})', overrides)


def resolve_model(args, read_card, overrides=None, demo=True):
    """ModelConfig from parsed arguments. `read_card(path)` returns a checkpoint's card ({} when it has none);
    `overrides` are the calling tool's own defaults; `demo`: use the family's shipped weights when no
    --model-checkpoint is given (predict, eval, export), else no weights (train, speed test)."""
    overrides = overrides or {}
    model_type, checkpoint = args.model_type, args.checkpoint
    spec = families.family_of(model_type or DEFAULT_MODEL_TYPE)
    if checkpoint is None and demo:
        checkpoint = spec.demo_checkpoint
    if checkpoint and not os.path.isfile(checkpoint):
        problem = 'is a folder, not a checkpoint file' if os.path.isdir(checkpoint) else 'checkpoint not found'
        raise ValueError(f"{checkpoint}: {problem}" + ('' if args.checkpoint else
                                                       ' (the demo model is missing; pass --model-checkpoint)'))
    card = read_card(checkpoint) if checkpoint else {}
    model_type = model_type or card.get('model_type') or DEFAULT_MODEL_TYPE
    spec = families.family_of(model_type)
    backbone = args.backbone or card.get('backbone') or spec.backbone_for(model_type)
    if backbone not in spec.backbones:
        raise ValueError(f"backbone {backbone} does not fit --model-type {model_type}; use one of "
                         f"{', '.join(spec.backbones)}")
    foreign = [flag for other in families.FAMILIES.values() if other is not spec
               for flag in given(args, other.options)]
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not an option of {model_type} ({spec.title})")
    if args.checkpoint is None and demo:
        if checkpoint is None or card.get('backbone', backbone) != backbone or \
                card.get('family', spec.name) != spec.name:
            raise ValueError(f"no --model-checkpoint given, and no demo model fits {model_type} {backbone}: pass "
                             f"an official checkpoint (.pth works directly) or one converted with "
                             f"tools/convert_weights.py")
    card_options = {k: v for k, v in card.items() if k in {f.name for f in dataclasses.fields(spec.options)}}
    options = fill(spec.options, args, {**overrides, **card_options})
    return ModelConfig(model_type=model_type, backbone=backbone, checkpoint=checkpoint,
                       device=args.device or default_device(),
                       cpu_kernels=getattr(args, 'cpu_kernels', None) or ModelConfig.cpu_kernels,
                       family=spec.name, options=options)


# ---------------------------------------------------------------- backends

BACKENDS = ('dygraph', 'inference', 'onnxruntime')


@dataclass(frozen=True)
class BackendConfig:
    """How a model runs in predict and eval."""
    backend: str = option('auto', '--backend', choices=('auto',) + BACKENDS,
                          help='dygraph: the Paddle model itself; inference: Paddle Inference on an export (oneDNN '
                               'on CPU, several times faster there); onnxruntime: its ONNX conversion (needs '
                               'paddle2onnx and onnxruntime). auto: on CPU for more than 8 frames '
                               '(IndexNet: 1 image) an exported graph, onnxruntime when installed (IndexNet: '
                               'inference), else dygraph. Exports are made on the fly; '
                               'tools/export.py writes them once')
    threads: int = option(CPUS, '--threads', type=positive_int,
                          help='CPU threads of the inference and onnxruntime backends',
                          default_help=f'{CPUS}: the cores this process may use')
    precision: str = option('fp32', '--precision', choices=('fp32', 'fp16'), help='fp16 needs --device gpu')
    export_dir: Optional[str] = option(None, '--export-dir', metavar='DIR',
                                       help='inference / onnxruntime: the folder tools/export.py wrote (same model '
                                            'options)', default_help='none: export on the fly to a temporary '
                                                                            'folder')
    tensorrt: bool = option(False, '--tensorrt', action='store_true',
                            help='inference backend on GPU: TensorRT engines (built for up to 1 x 1080 x 1920)')


def resolve_backend(args, model, defaults=None):
    backend = fill(BackendConfig, args, defaults)
    if backend.precision == 'fp16' and model.device != 'gpu':
        raise ValueError('--precision fp16 needs --device gpu (half precision gives no speed-up on CPU)')
    if backend.tensorrt and (model.device != 'gpu' or backend.backend not in ('auto', 'inference')):
        raise ValueError('--tensorrt needs --device gpu and the inference backend')
    if backend.export_dir and not os.path.isdir(backend.export_dir):
        raise ValueError(f"{backend.export_dir}: --export-dir not found (tools/export.py writes it)")
    return backend


# ---------------------------------------------------------------- predict

X264_PRESETS = ('ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow')


@dataclass(frozen=True)
class PredictConfig:
    src: Optional[str] = option(None, '--src', aliases=('--images-src', '--video-src'), metavar='PATH',
                                help='photo, folder (searched recursively), glob pattern in quotes, video, or '
                                     'folder of frames (a clip for rvm)',
                                default_help='the demo photos in image/src/ (with --preprocess-alignment)')
    bgr: Optional[str] = option(None, '--bgr', aliases=('--images-bgr', '--video-bgr'), metavar='PATH',
                                help='background plate(s) captured without the subject (BGMv2 only): one image '
                                     'for all inputs, a folder or glob paired with --src by relative path and name '
                                     '(suffixes such as _src/_bgr are ignored), or a video paired frame by frame '
                                     'with a --src video', default_help='image/bgr/ with the demo photos')
    trimap: Optional[str] = option(None, '--trimap', metavar='PATH',
                                   help='IndexNet: trimap(s) with 0 background, 128 unknown, 255 foreground: one for '
                                        'a single --src image, or a folder or glob paired with --src by relative '
                                        'path and name (a _trimap suffix is ignored)', default_help='none')
    mask: Optional[str] = option(None, '--mask', metavar='PATH',
                                 help="stcn/imsfr: the first frame's label PNG (0 background, 1..N objects, e.g. a "
                                      "DAVIS annotation) for a single clip, or a folder of <clip>.png (or "
                                      "<clip>/<frame>.png) paired with the clips of --src", default_help='none')
    output_dir: str = option(os.path.join(ROOT, 'output'), '--output-dir', metavar='DIR', help='where results go',
                             default_help='output/')
    output_types: tuple = option(('com', 'pha', 'fgr'), '--output-types', nargs='+', choices=OUTPUT_TYPES,
                                 help='com: composite (RGBA PNG, or over --target-bgr), pha: alpha matte, fgr: '
                                      'foreground, err: predicted error map, ref: refined patches (those the model '
                                      'has)')
    output_format: str = option('video', '--output-format', choices=('video', 'png'),
                                help='for video inputs: MP4 files (H.264 with PyAV installed, else mp4v) or PNG '
                                     'frames')
    video_preset: str = option('ultrafast', '--video-preset', choices=X264_PRESETS,
                               help='H.264 encoder speed of video outputs (PyAV): the fastest keeps up with matting '
                                    '(three HD outputs at medium take about as long as RVM matting them); slower '
                                    'presets make files about half the size at the same quality (crf 18)')
    target_bgr: Optional[str] = option(None, '--target-bgr', metavar='IMAGE|VIDEO|COLOUR',
                                       help='composite onto this instead of transparency: an image, a video '
                                            '(looped) or a colour ("#00ff00" or "0,255,0")',
                                       default_help='none: transparent RGBA for images, the official light '
                                                    'green for videos')
    preprocess_alignment: bool = option(False, '--preprocess-alignment', action='store_true',
                                        help='align each plate to its photo with a feature homography '
                                             '(hand-held captures)')
    batch_size: int = option(1, '--batch-size', type=positive_int,
                             help='BGMv2: frames per model call (videos, equal-size images)')
    seq_chunk: int = option(1, '--seq-chunk', type=positive_int,
                            help='rvm: frames per model call; the recurrent state is carried across chunks')
    fps: float = option(30.0, '--fps', type=float, help='frame rate of videos made from image sequences')
    overwrite: bool = option(False, '-y', action='store_true', help='overwrite existing outputs')
    resume: bool = option(False, '--resume', action='store_true', help='skip inputs whose outputs all exist already')
    strict: bool = option(False, '--strict', action='store_true',
                          help='stop at the first bad input instead of skipping it')


DEMO_SRC, DEMO_BGR = os.path.join(ROOT, 'image', 'src'), os.path.join(ROOT, 'image', 'bgr')


PARTNERS = {'bgr': 'a background plate captured without the subject',
            'trimap': 'a trimap (0 background, 128 unknown, 255 foreground) for each image',
            'mask': "the first frame's object masks (a label PNG, 0 background) for each clip"}


def resolve_predict(args, model):
    """PredictConfig with the output types the model has; with no --src, the demo photos and plates (aligned:
    they are hand-held). The family's partner input (--bgr or --trimap) is required, the other refused."""
    spec = model.spec
    has = spec.output_types(model.model_type)
    available = lambda asked: tuple(t for t in asked or PredictConfig.output_types if t in has)  # noqa: E731
    for name in PARTNERS:
        if getattr(args, name) is not None and name != spec.partner:
            raise ValueError(f'--model-type {model.model_type} takes no --{name}: {spec.title} needs '
                             + (PARTNERS[spec.partner] if spec.partner else f'no {PARTNERS[name].split(" (")[0]}'))
    if args.src is None:
        if spec.partner != 'bgr' or args.bgr is not None:
            raise ValueError('--src is required')
        return fill(PredictConfig, args, src=DEMO_SRC, bgr=DEMO_BGR, preprocess_alignment=True,
                    output_types=available(args.output_types))
    if spec.partner and getattr(args, spec.partner) is None:
        raise ValueError(f'--{spec.partner} is required with --src: {spec.title} needs {PARTNERS[spec.partner]}'
                         + (' (or use --model-type rvm)' if spec.partner == 'bgr' else ''))
    return fill(PredictConfig, args, output_types=available(args.output_types))


# ---------------------------------------------------------------- eval

@dataclass(frozen=True)
class EvalConfig:
    data_dir: Optional[str] = option(None, '--data-dir', metavar='DIR',
                                     help='test set. Image protocol: fgr/ pha/ [trimap/] or RGBA images; video '
                                          'protocol (required): the composited clips <clip>/{com,fgr,pha,bgr}/; '
                                          'trimap protocol (required): merged/ (or original/) alpha/ trimap/, or a '
                                          'data.txt of image|alpha|trimap rows',
                                     default_help='image protocol: photomatte85 of configs/datasets.json')
    protocol: str = option('auto', '--protocol', choices=('auto', 'image', 'video', 'trimap', 'davis'),
                           help='image: BGMv2 composites + DIM metrics; video: RVM clips + video metrics; trimap: '
                                'IndexNet on test images with trimaps + DIM metrics; davis: video object '
                                'segmentation J&F on a DAVIS root; auto: video for a --data-dir with <clip>/com/ '
                                'folders when the model can take it, else the family\'s own (image for BGMv2, '
                                'video for rvm, trimap for indexnet, davis for stcn and imsfr)')
    image_set: str = option('2017/val', '--image-set', help='davis protocol: ImageSets/<year>/<split>.txt to score '
                                                             '(2017/val, 2017/train, 2016/val)')
    bgr_dir: Optional[str] = option(None, '--bgr-dir', metavar='DIR',
                                    help='image protocol: backgrounds to composite onto',
                                    default_help='the validation split of "backgrounds" in configs/datasets.json')
    pred_dir: Optional[str] = option(None, '--pred-dir', metavar='DIR',
                                     help='score the predictions in this folder instead of running a model')
    output_dir: str = option(os.path.join(ROOT, 'output', 'eval'), '--output-dir', metavar='DIR',
                             help='results folder', default_help='output/eval')
    seed: int = option(0, '--seed', type=int, help='image protocol: seed of the evaluation composites')
    augment: str = option('official', '--augment', choices=('official', 'none'),
                          help='image protocol: official: the BGMv2 evaluation augmentation of each composite '
                               '(shadow, noise, plate colour jitter and misalignment, each drawn at random); none: '
                               'the plain composite with the background itself as the plate')
    plate_shift: float = option(0.0, '--plate-shift', type=checked(float, lambda v: v >= 0, '>= 0'), metavar='PX',
                                help='image protocol: then move every plate by this many pixels in a random '
                                     'direction (a hand-held capture)')
    plate_noise: float = option(0.0, '--plate-noise', type=checked(float, lambda v: v >= 0, '>= 0'),
                                metavar='SIGMA', help='image protocol: then add Gaussian noise of this std (0-1 '
                                                      'scale) to every plate')
    trimap_radius: int = option(10, '--trimap-radius', type=positive_int,
                                help='image protocol: unknown band of derived trimaps: L1 distance in pixels')
    resolution: Optional[int] = option(None, '--resolution', type=checked(int, lambda v: v >= 4, 'at least 4'),
                                       help='image protocol: resize every test image so that its longer side has '
                                            'this many pixels before compositing and scoring (SAD, Grad and Conn '
                                            'are sums and scale with the size)', default_help='none: native size')
    hr: bool = option(False, '--hr', action='store_true',
                      help="video protocol: the high-resolution evaluator's definitions (evaluate_hr.py: Grad "
                           "without min-max stretch, no Conn), as the paper reports 1920x1080")
    seq_chunk: int = option(1, '--seq-chunk', type=positive_int, help='video protocol: frames per model call')
    save_pred: bool = option(False, '--save-pred', action='store_true',
                             help='also write the predicted mattes and foregrounds')
    baseline: Optional[str] = option(None, '--baseline', choices=('difference',),
                                     help='image protocol: also score the difference matte clip(blur(max_c |src - '
                                          'bgr|) / t, 0, 1) on the same composites, printed as its own row (results '
                                          'in <output-dir>/baseline_difference/)')
    baseline_threshold: Optional[float] = option(None, '--baseline-threshold',
                                                 type=checked(float, lambda v: v > 0, '> 0'),
                                                 help="the difference matte's t",
                                                 default_help='none: chosen on the evaluated composites, the t of the '
                                                              'smallest mean alpha error (the best the one line can '
                                                              'do there)')


def _configured_dir(name, flag):
    """The validation folder of a dataset of configs/datasets.json, for an option left at its default."""
    from dataset.config import load_roots, split_dir
    try:
        return split_dir(load_roots(), name, 'valid')
    except ValueError as e:
        raise ValueError(f"no {flag} given and the default is missing: {e}. Pass {flag}, e.g. "
                         f"--data-dir dataset/demo/valid --bgr-dir dataset/demo/backgrounds/valid") from None


def resolve_eval(args, model):
    """EvalConfig with the protocol chosen (its options checked) and the folders made absolute.

    --protocol auto: video for a --data-dir that holds clips with composites (<clip>/com/) when the family
    (or a prediction folder) can be scored that way, else the family's first protocol."""
    from dataset.clips import is_composited_layout
    cfg = fill(EvalConfig, args)
    spec = model.spec
    protocols = spec.protocols                   # predictions can be scored by any protocol, the family's first
    if cfg.pred_dir:
        protocols += tuple(p for p in ('image', 'video', 'trimap', 'davis') if p not in protocols)
    protocol = cfg.protocol
    if protocol == 'auto':
        clips = cfg.data_dir and is_composited_layout(cfg.data_dir) and 'video' in protocols
        protocol = 'video' if clips else protocols[0]
    if protocol not in protocols:
        raise ValueError(f"--model-type {model.model_type} is evaluated with the {' or '.join(protocols)} protocol" +
                         (" on composited clips (--data-dir <clip>/{com,fgr,pha,bgr}/)" if protocols == ('video',)
                          else ''))
    image_only = [('--augment none', cfg.augment == 'none'), ('--plate-shift', cfg.plate_shift),
                  ('--plate-noise', cfg.plate_noise)]
    other = {'image': [('--hr', cfg.hr)],
             'video': [('--bgr-dir', cfg.bgr_dir), ('--resolution', cfg.resolution)] + image_only,
             'trimap': [('--hr', cfg.hr), ('--bgr-dir', cfg.bgr_dir), ('--resolution', cfg.resolution)] + image_only}
    other['video'] += [('--baseline', cfg.baseline)]
    other['trimap'] += [('--baseline', cfg.baseline)]
    other['davis'] = other['trimap'] + [('--save-pred', cfg.save_pred)]
    wrong = [flag for flag, value in other[protocol] if value]
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: not an option of the {protocol} protocol")
    on_composites = [flag for flag, value in [('--baseline', cfg.baseline)] + image_only if value]
    if on_composites and cfg.pred_dir:
        raise ValueError(f"{', '.join(on_composites)}: about the composites of model mode, not an option with "
                         f"--pred-dir")
    if protocol == 'video' and not cfg.data_dir:
        raise ValueError("the video protocol needs --data-dir: the composited test set (<clip>/{com,fgr,pha,bgr}/, "
                         "e.g. videomatte_512x288)")
    if protocol == 'davis' and not cfg.data_dir:
        raise ValueError("the davis protocol needs --data-dir: a DAVIS root (ImageSets/, JPEGImages/480p/, "
                         "Annotations/480p/)")
    if protocol == 'trimap' and not cfg.data_dir:
        raise ValueError("the trimap protocol needs --data-dir: test images with alphas and trimaps (merged/ alpha/ "
                         "trimap/, or the data.txt that tools/compose_trimap_set.py writes)")
    data_dir = os.path.abspath(cfg.data_dir or _configured_dir('photomatte85', '--data-dir'))
    bgr_dir = cfg.bgr_dir
    if protocol == 'image' and not cfg.pred_dir:
        bgr_dir = os.path.abspath(bgr_dir or _configured_dir('backgrounds', '--bgr-dir'))
    return dataclasses.replace(cfg, protocol=protocol, data_dir=data_dir, bgr_dir=bgr_dir)


# ---------------------------------------------------------------- train

@dataclass(frozen=True)
class DataConfig:
    """Training and validation data: names in the dataset config (configs/datasets.json)."""
    dataset_name: str = option('videomatte240k', '--dataset-name',
                               help="training set: a name in the dataset config, or a list 'a*20,b' (a repeated "
                                    "20 times)")
    background_name: str = option('backgrounds', '--background-name', help='training backgrounds')
    valid_dataset_name: Optional[str] = option(None, '--valid-dataset-name', help='validation set',
                                               default_help='--dataset-name')
    valid_background_name: Optional[str] = option(None, '--valid-background-name', help='validation backgrounds',
                                                  default_help='--background-name')
    dataset_config: str = option(os.path.join(ROOT, 'configs', 'datasets.json'), '--dataset-config',
                                 metavar='JSON', help='dataset roots', default_help='configs/datasets.json')
    dataset_root: tuple = option((), '--dataset-root', action='append', metavar='NAME=PATH',
                                 help='override or add the root of a dataset (repeatable)', default_help='none')
    resolution: Optional[int] = option(None, '--resolution', type=positive_int,
                                       help='side of the loaded samples; crops are 1/2 to 1 of it',
                                       default_help='by model type, see below')
    num_workers: int = option(min(4, CPUS), '--num-workers', type=non_negative_int,
                              help='data-loading processes (0: in the training process)',
                              default_help=f'{min(4, CPUS)}: min(4, usable CPU cores)')
    valid_samples: int = option(50, '--valid-samples', type=positive_int, help='evenly spaced validation samples')


@dataclass(frozen=True)
class TrainConfig:
    """The run: where it writes, how long, how often it logs, validates and saves."""
    name: Optional[str] = option(None, '--name', help='run name: checkpoint/<name>, log/<name>',
                                 default_help='<model-type>_<backbone>')
    checkpoint_dir: str = option('checkpoint', '--checkpoint-dir', metavar='DIR', help='checkpoints go to DIR/<name>')
    log_dir: str = option('log', '--log-dir', metavar='DIR', help='logs go to DIR/<name>')
    epochs: int = option(1, '--epochs', type=positive_int, help='train until this epoch (official --epoch-end)')
    max_steps: Optional[int] = option(None, '--max-steps', type=positive_int,
                                      help='stop after this many steps in all (for short runs)')
    batch_size: Optional[int] = option(None, '--batch-size', type=positive_int, help='samples per process',
                                       default_help='by model type, see below')
    seed: int = option(0, '--seed', type=int, help='seed of the initial weights, data order and augmentation')
    no_amp: bool = option(False, '--no-amp', action='store_true',
                          help='no mixed precision on GPU (it is a no-op on CPU)')
    resume: Optional[str] = option(None, '--resume', nargs='?', const='auto', metavar='STATE_JSON',
                                   help='continue a run: its last complete checkpoint, or the given step-N.json')
    log_interval: int = option(10, '--log-interval', type=positive_int, help='steps between log lines')
    image_interval: Optional[int] = option(None, '--image-interval', type=positive_int,
                                           help='steps between VisualDL image grids',
                                           default_help='by model type, see below')
    valid_interval: Optional[int] = option(None, '--valid-interval', type=positive_int,
                                           help='steps between validations', default_help='by model type, see below')
    checkpoint_interval: Optional[int] = option(None, '--checkpoint-interval', type=positive_int,
                                                help='steps between checkpoints (and at each epoch end)',
                                                default_help='by model type, see below')
    keep_checkpoints: int = option(3, '--keep-checkpoints', type=positive_int,
                                   help='how many of the last checkpoints to keep')
    check_data: bool = option(False, '--check-data', action='store_true',
                              help='only check that the training data exist')


def training_options():
    """The training-option classes of every model type that can be trained."""
    found = []
    for spec in families.FAMILIES.values():
        for model_type in spec.model_types:
            try:
                found.append(spec.trainer(model_type).options)
            except families.Unavailable:
                pass
    return list(dict.fromkeys(found))


def resolve_train(args, model):
    """(DataConfig, TrainConfig, family training options) with the model type's defaults filled in."""
    trainer = model.spec.trainer(model.model_type)            # Unavailable: no training for this family yet
    foreign = {flag for cls in training_options() if cls is not trainer.options for flag in given(args, cls)}
    foreign -= set(given(args, trainer.options))
    if foreign:
        raise ValueError(f"{', '.join(sorted(foreign))}: not a training option of {model.model_type}")
    defaults = trainer.defaults
    data = fill(DataConfig, args, {'resolution': defaults['resolution']})
    data = dataclasses.replace(data, valid_dataset_name=data.valid_dataset_name or data.dataset_name,
                               valid_background_name=data.valid_background_name or data.background_name)
    run = fill(TrainConfig, args, defaults)
    run = dataclasses.replace(run, name=run.name or f'{model.model_type}_{model.backbone}')
    return data, run, fill(trainer.options, args, defaults)
