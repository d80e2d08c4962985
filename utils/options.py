"""The model options every entry point shares (named as in the official scripts), and the device."""
import json
import os

import paddle

from model import BACKBONES, MODEL_TYPES, REFINE_MODES, RVM_BACKBONES, RVM_REFINERS, build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CHECKPOINT = os.path.join(ROOT, 'model', 'weights', 'bgmv2_mobilenetv2_demo.pdparams')
# the demo model's card: how it was trained, and the inference settings it was made for
DEMO_CARD = os.path.splitext(DEMO_CHECKPOINT)[0] + '.json'


def add_model_args(parser, refine_threshold=0.7):
    """--model-* and --device. `refine_threshold` default: 0.7 as the official inference scripts."""
    g = parser.add_argument_group('model')
    g.add_argument('--model-type', choices=MODEL_TYPES, default='mattingrefine',
                   help='mattingbase: coarse network only; mattingrefine: coarse network at '
                        '--model-backbone-scale plus the full-resolution refiner (default); rvm: Robust Video '
                        'Matting, recurrent, needs no background plate')
    g.add_argument('--model-backbone', choices=list(dict.fromkeys(BACKBONES + RVM_BACKBONES)), default=None,
                   help=f'encoder: {", ".join(BACKBONES)} for BGMv2 (default mobilenetv2), '
                        f'{", ".join(RVM_BACKBONES)} for rvm (default mobilenetv3)')
    g.add_argument('--model-refiner', choices=RVM_REFINERS, default=RVM_REFINERS[0],
                   help=f'rvm only: the high-resolution refiner (default {RVM_REFINERS[0]})')
    g.add_argument('--model-checkpoint', default=None,
                   help='weights: a .pdparams of this project or an official PyTorch .pth (converted on the '
                        'fly, no torch needed). Default: the demo model shipped in model/weights/ '
                        '(mobilenetv2, trained by this project on a small demo set; not the official weights)')
    g.add_argument('--model-backbone-scale', type=float, default=None,
                   help='scale at which the base network sees the image, at most 0.5 (default 0.25, the official '
                        'value for HD; use 0.125 for 4K). The demo model, trained on small crops, defaults to '
                        'the scale in its card model/weights/bgmv2_mobilenetv2_demo.json')
    g.add_argument('--model-refine-mode', choices=REFINE_MODES, default='sampling',
                   help='which patches the refiner re-predicts: the --model-refine-sample-pixels worst '
                        '(sampling, default), those above --model-refine-threshold (thresholding), or all (full)')
    g.add_argument('--model-refine-sample-pixels', type=int, default=80_000,
                   help='pixels refined in sampling mode, in 4x4 patches (default 80000 for HD; 320000 for 4K)')
    g.add_argument('--model-refine-threshold', type=float, default=refine_threshold,
                   help=f'error threshold of thresholding mode (default {refine_threshold})')
    g.add_argument('--model-refine-kernel-size', type=int, choices=[1, 3], default=3,
                   help='refiner conv kernel size; the official weights use 3 (default)')
    g.add_argument('--device', choices=['cpu', 'gpu'], default=default_device(),
                   help=f'where to run (default {default_device()}: gpu when Paddle is built with CUDA)')
    return g


def add_backend_args(parser):
    """--backend, --threads and --precision of the entry points that run a model."""
    from utils.inference import BACKENDS
    g = parser.add_argument_group('backend')
    g.add_argument('--backend', choices=('auto',) + BACKENDS, default='auto',
                   help='dygraph: the Paddle model itself; inference: Paddle Inference on an export (oneDNN on '
                        'CPU; about 5x faster there); onnxruntime: its ONNX conversion (needs paddle2onnx and '
                        'onnxruntime). auto (default): inference on CPU when there are more than 8 frames, '
                        'else dygraph. Exports are made on the fly; tools/export.py writes them once')
    g.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                   help='CPU threads of the inference and onnxruntime backends (default: all cores)')
    g.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32', help='fp16 needs --device gpu')
    return g


def default_device():
    return 'gpu' if paddle.device.is_compiled_with_cuda() else 'cpu'


def set_device(name):
    if name == 'gpu' and not paddle.device.is_compiled_with_cuda():
        raise ValueError("--device gpu needs paddlepaddle-gpu (this Paddle is a CPU build); use --device cpu")
    paddle.set_device(name)


def model_options(args):
    """The keyword arguments of model.build_model that the parsed options name."""
    rvm = args.model_type == 'rvm'
    if args.model_backbone is None:
        args.model_backbone = RVM_BACKBONES[0] if rvm else 'mobilenetv2'
    if args.model_backbone not in (RVM_BACKBONES if rvm else BACKBONES):
        raise ValueError(f"backbone {args.model_backbone} does not fit --model-type {args.model_type}; "
                         f"use one of {', '.join(RVM_BACKBONES if rvm else BACKBONES)}")
    if args.model_backbone_scale is None:
        args.model_backbone_scale = demo_card().get('backbone_scale', 0.25) if not args.model_checkpoint else 0.25
    return dict(model_type=args.model_type, backbone=args.model_backbone, refiner=args.model_refiner,
                backbone_scale=args.model_backbone_scale, refine_mode=args.model_refine_mode,
                refine_sample_pixels=args.model_refine_sample_pixels,
                refine_threshold=args.model_refine_threshold, refine_kernel_size=args.model_refine_kernel_size)


def demo_card():
    """The demo model's card ({} when absent)."""
    if not os.path.isfile(DEMO_CARD):
        return {}
    with open(DEMO_CARD, encoding='utf-8') as f:
        return json.load(f)


def checkpoint_path(args):
    """--model-checkpoint, or the demo model when it fits the chosen backbone."""
    if args.model_checkpoint:
        if not os.path.isfile(args.model_checkpoint):
            raise FileNotFoundError(f"{args.model_checkpoint}: checkpoint not found")
        return args.model_checkpoint
    if args.model_type == 'rvm' or args.model_backbone != 'mobilenetv2':
        raise ValueError(f"no --model-checkpoint given, and the demo model is BGMv2 mobilenetv2, not "
                         f"{args.model_type} {args.model_backbone}: pass an official checkpoint (.pth works "
                         f"directly) or one converted with tools/convert_weights.py")
    if not os.path.isfile(DEMO_CHECKPOINT):
        raise FileNotFoundError(f"{DEMO_CHECKPOINT}: demo model missing; pass --model-checkpoint")
    return DEMO_CHECKPOINT


def model_from_args(args):
    """Build the model the options describe, load its weights (by name and shape) and switch to eval."""
    from utils.checkpoint import load_weights
    set_device(args.device)
    options = model_options(args)
    model = build_model(**options)
    loaded, skipped = load_weights(model, checkpoint_path(args))
    missing = [k for k in model.state_dict() if k not in loaded]
    if missing:
        raise ValueError(f"{checkpoint_path(args)}: does not fit {args.model_type}/{args.model_backbone}: "
                         f"{len(missing)} weights missing (first: {missing[0]})")
    model.eval()
    return model
