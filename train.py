"""Train a model family: BGMv2 (the base network, then the whole network with its refiner), Robust Video Matting
(its four stages; run.sh rvm chains them) or IndexNet.

    python3 train.py --model-type mattingbase --model-backbone resnet50 --dataset-name videomatte240k \
        --epochs 8 --name base
    python3 train.py --model-type mattingrefine --model-backbone resnet50 --dataset-name videomatte240k \
        --checkpoint checkpoint/base/final.pdparams --epochs 1 --name refine
    python3 train.py --model-type rvm --model-backbone mobilenetv3 --dataset-name videomatte240k \
        --seq-length-lr 15 --epochs 20 --name rvm_stage1                   # spec/rvm.md 2: run.sh rvm
    python3 -m paddle.distributed.launch --gpus 0,1,2,3 train.py ...      # several GPUs (or CPU processes)

BGMv2 defaults follow the official train_base.py / train_refine.py (spec/bgmv2.md 2.6): Adam, per-module
learning rates, 512 / 2048 px samples cropped to 256-511 / 1024-2044 px, batch 8 / 4. A Laplacian alpha loss
is added to the official losses (--loss-laplacian 0 removes it). RVM defaults are its stage 1 (spec/rvm.md 2.1):
batch 1 per process, 15-frame 512 px clips, Adam at 1e-4 / 2e-4 / 2e-4 / 0 for backbone / ASPP / decoder / refiner;
each step adds the segmentation pass and, with --train-hr, the high-resolution pass.

Outputs: checkpoint/<name>/step-N.{pdparams,pdopt,json} every --checkpoint-interval steps and at each
epoch end (atomic; the .json is written last and marks a complete checkpoint), final.pdparams; log/<name>/ with VisualDL records
(`visualdl --logdir log --language en`), train.log and valid.csv. `--resume` continues the last complete
checkpoint with the same data order and random state as an uninterrupted run.
"""
import argparse
import sys

import config
import families
from training.loop import train
from utils.checkpoint import read_card


def trainers():
    """(model type, training task) of every model type that can be trained."""
    found = []
    for spec in families.FAMILIES.values():
        for model_type in spec.model_types:
            try:
                found.append((model_type, spec.trainer(model_type)))
            except families.Unavailable:
                pass
    return found


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = trainers()
    by_type = {key: ', '.join(f'{t} {task.defaults[key]}' for t, task in tasks)
               for key in ('batch_size', 'resolution', 'image_interval', 'valid_interval', 'checkpoint_interval')}
    config.add_model_options(p, aliases={'checkpoint': ['--checkpoint']}, demo=False)
    config.add_options(p, config.DataConfig, 'data', default_help={'resolution': by_type['resolution']})
    config.add_options(p, config.TrainConfig, 'training', default_help=by_type)
    for task in dict.fromkeys(type(task) for _, task in tasks):
        config.add_options(p, task.options, f'training options of {", ".join(t for t, k in tasks if type(k) is task)}')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        model = config.resolve_model(args, read_card, demo=False)
        data, run, options = config.resolve_train(args, model)
        task = model.spec.trainer(model.model_type)
        if run.check_data:
            print(task.describe_data(data, options))
            return 0
        train(model, data, run, options, task, model.spec.build)
    except (ValueError, FloatingPointError) as e:
        if args.check_data:            # run.sh reads the last line to skip a stage whose data are absent
            print(e)
            return 1
        sys.exit(f"error: {e}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
