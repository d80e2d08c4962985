"""Train BGMv2: the base network (stage 1) or the whole network with its refiner (stage 2).

    python3 train.py --model-type mattingbase --model-backbone resnet50 --dataset-name videomatte240k \
        --epochs 8 --name base
    python3 train.py --model-type mattingrefine --model-backbone resnet50 --dataset-name videomatte240k \
        --checkpoint checkpoint/base/final.pdparams --epochs 1 --name refine
    python3 -m paddle.distributed.launch --gpus 0,1,2,3 train.py ...      # several GPUs (or CPU processes)

Defaults follow the official train_base.py / train_refine.py (spec/bgmv2.md 2.6): Adam, per-module
learning rates, 512 / 2048 px samples cropped to 256-511 / 1024-2044 px, batch 8 / 4. A Laplacian alpha loss
is added to the official losses (--loss-laplacian 0 removes it).

Outputs: checkpoint/<name>/step-N.{pdparams,pdopt,json} every --checkpoint-interval steps and at each
epoch end (atomic; the .json is written last and marks a complete checkpoint), final.pdparams; log/<name>/ with VisualDL records
(`visualdl --logdir log --language en`), train.log and valid.csv. `--resume` continues the last complete
checkpoint with the same data order and random state as an uninterrupted run.
"""
import argparse
import glob
import json
import os
import sys
import time

import cv2
import numpy as np
import paddle
from tqdm import tqdm

from dataset.config import DEFAULT_CONFIG, background_split, load_roots, matting_split
from dataset.matting import Collate, EpochSampler, MattingDataset
from model import build_model
from utils.checkpoint import load_weights, save_atomic
from utils.io import atomic_path, to_uint8
from utils.losses import LossWeights, base_loss, refine_loss
from utils.options import add_model_args, model_options, set_device

MODULES = ('backbone', 'aspp', 'decoder', 'refiner')
DEFAULTS = {   # official values per stage: lrs, batch, resolution, image/valid/checkpoint intervals
    'mattingbase': dict(lr=(1e-4, 5e-4, 5e-4, 0), batch_size=8, resolution=512,
                        image_interval=2000, valid_interval=5000, checkpoint_interval=5000),
    'mattingrefine': dict(lr=(5e-5, 5e-5, 1e-4, 3e-4), batch_size=4, resolution=2048,
                          image_interval=1000, valid_interval=2000, checkpoint_interval=2000),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, refine_threshold=0.7)
    p.add_argument('--checkpoint', dest='model_checkpoint',
                   help='initial weights (.pdparams or official .pth), loaded where name and shape match; '
                        'same as --model-checkpoint (for training the default is no initial weights)')
    d = p.add_argument_group('data')
    d.add_argument('--dataset-name', default='videomatte240k',
                   help="training set: a name in the dataset config, or a list 'a*20,b' (a repeated 20 times)")
    d.add_argument('--background-name', default='backgrounds')
    d.add_argument('--valid-dataset-name', help='default: --dataset-name')
    d.add_argument('--valid-background-name', help='default: --background-name')
    d.add_argument('--dataset-config', default=DEFAULT_CONFIG)
    d.add_argument('--dataset-root', action='append', default=[], metavar='NAME=PATH',
                   help='override or add the root of a dataset (repeatable)')
    d.add_argument('--resolution', type=int, help='side of the loaded samples; crops are 1/2 to 1 of it '
                                                  '(default 512 base, 2048 refine)')
    d.add_argument('--num-workers', type=int, default=min(4, os.cpu_count() or 1))
    t = p.add_argument_group('training')
    t.add_argument('--name', help='run name: checkpoint/<name>, log/<name> (default <model-type>_<backbone>)')
    t.add_argument('--checkpoint-dir', default='checkpoint')
    t.add_argument('--log-dir', default='log')
    t.add_argument('--epochs', type=int, default=1, help='train until this epoch (official --epoch-end)')
    t.add_argument('--max-steps', type=int, help='stop after this many steps in all (for short runs)')
    t.add_argument('--batch-size', type=int, help='per process (default 8 base, 4 refine)')
    for name in MODULES:
        t.add_argument(f'--lr-{name}', type=float, help=f'learning rate of the {name}; 0 freezes it')
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--no-amp', action='store_true', help='no mixed precision on GPU (it is a no-op on CPU)')
    t.add_argument('--resume', nargs='?', const='auto', metavar='STATE_JSON',
                   help='continue a run: its last complete checkpoint, or the given step-N.json')
    t.add_argument('--log-interval', type=int, default=10)
    t.add_argument('--image-interval', type=int)
    t.add_argument('--valid-interval', type=int)
    t.add_argument('--valid-samples', type=int, default=50, help='evenly spaced validation samples')
    t.add_argument('--checkpoint-interval', type=int)
    t.add_argument('--check-data', action='store_true', help='only check that the training data exist')
    t.add_argument('--keep-checkpoints', type=int, default=3, help='how many of the last checkpoints to keep')
    LossWeights.add_args(p)
    args = p.parse_args(argv)
    defaults = DEFAULTS[args.model_type]
    for key in ('batch_size', 'resolution', 'image_interval', 'valid_interval', 'checkpoint_interval'):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    for name, lr in zip(MODULES, defaults['lr']):
        if getattr(args, f'lr_{name}') is None:
            setattr(args, f'lr_{name}', lr)
    args.name = args.name or f'{args.model_type}_{args.model_backbone}'
    args.valid_dataset_name = args.valid_dataset_name or args.dataset_name
    args.valid_background_name = args.valid_background_name or args.background_name
    if args.model_type == 'mattingrefine' and args.resolution % 8:
        p.error(f'--resolution must be a multiple of 8 for mattingrefine, got {args.resolution}')
    return args


# ---------------------------------------------------------------- model, optimiser

def build_optimizer(model, args):
    """Adam with one parameter group per module at its own rate (Paddle multiplies the global rate 1.0
    by the group's); a module with rate 0 is frozen: no gradients, no optimiser state."""
    groups = []
    for name in MODULES:
        module, lr = getattr(model, name, None), getattr(args, f'lr_{name}')
        if module is None:
            continue
        for param in module.parameters():
            param.stop_gradient = lr == 0
        if lr > 0:
            groups.append({'params': module.parameters(), 'learning_rate': lr})
    if not groups:
        raise ValueError('every learning rate is 0: nothing to train')
    return paddle.optimizer.Adam(learning_rate=1.0, parameters=groups)


def train_mode(model, freeze_pool_bn):
    """model.train(), except the BN of ASPP's image-pooling branch when a device holds one sample:
    it would normalise a single value per channel (torch refuses; Paddle returns garbage), so it keeps
    using its running statistics."""
    model.train()
    if freeze_pool_bn:
        model.aspp.convs[-1][2].eval()


def compute_loss(model_type, outputs, true_pha, true_fgr, weights):
    if model_type == 'mattingbase':
        pha, fgr, err, _ = outputs
        return base_loss(pha, fgr, err, true_pha, true_fgr, weights)
    pha, fgr, pha_sm, fgr_sm, err_sm, _ = outputs
    return refine_loss(pha, fgr, pha_sm, fgr_sm, err_sm, true_pha, true_fgr, weights)


def train_step(net, optimizer, scaler, batch, args, weights, step):
    """One optimisation step on a batch [true_pha, true_fgr, src, bgr]; returns (loss, terms).
    Paddle's generator (dropout) is reseeded per step, so a resumed run draws the same masks."""
    paddle.seed(args.seed * 1_000_003 + step * 101 + paddle.distributed.get_rank())
    true_pha, true_fgr, src, bgr = batch
    with paddle.amp.auto_cast(enable=scaler is not None):
        outputs = net(src, bgr)
    loss, terms = compute_loss(args.model_type, [o.astype('float32') for o in outputs], true_pha, true_fgr, weights)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    optimizer.clear_grad()
    return float(loss), {k: float(v) for k, v in terms.items()}


# ---------------------------------------------------------------- data

def make_loaders(args, roots):
    multiple = 4 if args.model_type == 'mattingrefine' else 1
    scale = (0.3, 1) if args.model_type == 'mattingrefine' else (0.4, 1)
    train_set = MattingDataset(matting_split(roots, args.dataset_name, 'train'),
                               background_split(roots, args.background_name, 'train'),
                               args.resolution, train=True, seed=args.seed, pair_scale=scale)
    if len(train_set) < args.batch_size * paddle.distributed.get_world_size():
        raise ValueError(f'{args.dataset_name}: {len(train_set)} samples, fewer than one batch of '
                         f'{args.batch_size} per process')
    sampler = EpochSampler(train_set, args.batch_size, seed=args.seed)
    train = paddle.io.DataLoader(train_set, batch_sampler=sampler, collate_fn=Collate(args.seed, True, multiple),
                                 num_workers=args.num_workers)
    try:
        valid_set = MattingDataset(matting_split(roots, args.valid_dataset_name, 'valid', repeat=False),
                                   background_split(roots, args.valid_background_name, 'valid'),
                                   args.resolution, train=False, seed=args.seed, pair_scale=(0.3, 1))
    except ValueError as e:
        print(f'no validation: {e}')
        return train, sampler, None
    n = min(args.valid_samples, len(valid_set))
    picks = [i * len(valid_set) // n for i in range(n)]    # evenly spaced, as the official SampleDataset
    valid = paddle.io.DataLoader(paddle.io.Subset(valid_set, picks), batch_size=1,
                                 collate_fn=Collate(args.seed, augment=False), num_workers=min(args.num_workers, 1))
    return train, sampler, valid


def check_data(args):
    """--check-data: exit 0 if the training data are there, else 1 with the reason (run.sh skips the stage)."""
    try:
        roots = load_roots(args.dataset_config, args.dataset_root)
        pairs = matting_split(roots, args.dataset_name, 'train')
        backgrounds = background_split(roots, args.background_name, 'train')
    except ValueError as e:
        print(e)
        return 1
    print(f'{args.dataset_name}: {len(pairs)} training pairs; {args.background_name}: {len(backgrounds)} backgrounds')
    return 0


# ---------------------------------------------------------------- validation, logging, checkpoints

def validate(model, loader):
    """Mean SAD (/1000), MSE, Grad, Conn of the predicted alpha over whole images (trimap-free)."""
    from utils.metrics import dim_metrics
    model.eval()
    rows = []
    with paddle.no_grad():
        for true_pha, _, src, bgr in loader:
            pha = model(src, bgr)[0].numpy()[0, 0]
            gt = true_pha.numpy()[0, 0]
            rows.append(dim_metrics(pha, gt, np.full(gt.shape, 128, np.uint8)))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def image_grid(batch, outputs):
    """First sample: composite | background | true alpha / predicted alpha | foreground | error."""
    true_pha, _, src, bgr = (x[0].numpy().transpose(1, 2, 0) for x in batch)
    pha, fgr = (x[0].numpy().transpose(1, 2, 0) for x in outputs[:2])
    err = outputs[2 if len(outputs) == 4 else 4][0, 0].numpy()       # base: err; refine: err_sm
    err = cv2.resize(err, pha.shape[1::-1], interpolation=cv2.INTER_NEAREST)[..., None]
    gray = lambda a: np.repeat(a, 3, axis=2)   # noqa: E731
    return to_uint8(np.vstack([np.hstack([src, bgr, gray(true_pha)]), np.hstack([gray(pha), fgr * pha, gray(err)])]))


def rename_optimizer_state(state, model, to_structured):
    """Paddle keys optimiser accumulators by generated parameter names (conv2d_309.w_0_moment1_0) that differ
    from process to process; checkpoints key them by the structured names (backbone...weight_moment1_0)."""
    pairs = [(p.name, n) for n, p in model.named_parameters()]
    pairs = pairs if to_structured else [(n, g) for g, n in pairs]
    pairs.sort(key=lambda pair: -len(pair[0]))

    def rename(key):
        for old, new in pairs:
            if key == old or key.startswith(old + '_'):
                return new + key[len(old):]
        return key
    return {rename(k): rename_optimizer_state(v, model, to_structured) if isinstance(v, dict) else v
            for k, v in state.items()}


class Checkpoints:
    """checkpoint/<name>/: step-N.pdparams + .pdopt (+ .pdscaler with AMP) + .json (written last)."""

    def __init__(self, directory, keep):
        self.directory, self.keep = directory, keep
        os.makedirs(directory, exist_ok=True)

    def save(self, model, optimizer, scaler, state):
        prefix = os.path.join(self.directory, f"step-{state['step']:07d}")
        save_atomic(model.state_dict(), prefix + '.pdparams')
        save_atomic(rename_optimizer_state(optimizer.state_dict(), model, True), prefix + '.pdopt')
        if scaler is not None:
            save_atomic(scaler.state_dict(), prefix + '.pdscaler')
        with atomic_path(prefix + '.json') as tmp, open(tmp, 'w') as f:
            json.dump(state, f, indent=1)
        for old in self.complete()[:-self.keep]:
            for path in glob.glob(old[:-len('.json')] + '.*'):
                os.remove(path)          # the .json goes with them; a half-deleted one is ignored

    def complete(self):
        return sorted(glob.glob(os.path.join(self.directory, 'step-*.json')))

    @staticmethod
    def load(path, model, optimizer, scaler):
        with open(path) as f:
            state = json.load(f)
        prefix = path[:-len('.json')]
        load_weights(model, prefix + '.pdparams', strict=True)
        optimizer.set_state_dict(rename_optimizer_state(paddle.load(prefix + '.pdopt'), model, False))
        if scaler is not None and os.path.exists(prefix + '.pdscaler'):
            scaler.load_state_dict(paddle.load(prefix + '.pdscaler'))
        return state


class Logger:
    """Rank 0: VisualDL scalars/images, log/<name>/train.log and valid.csv; other ranks stay quiet."""

    def __init__(self, directory, enabled):
        self.enabled, self.directory = enabled, directory
        if enabled:
            from visualdl import LogWriter
            os.makedirs(directory, exist_ok=True)
            self.writer = LogWriter(logdir=directory)
            self.file = open(os.path.join(directory, 'train.log'), 'a')

    def text(self, message):
        if self.enabled:
            self.file.write(time.strftime('%Y-%m-%d %H:%M:%S ') + message + '\n')
            self.file.flush()
            tqdm.write(message)

    def scalars(self, prefix, values, step):
        if self.enabled:
            for key, value in values.items():
                self.writer.add_scalar(f'{prefix}/{key}', value=value, step=step)

    def image(self, tag, image, step):
        if self.enabled:
            self.writer.add_image(tag, image, step)

    def valid_row(self, state, metrics):
        if not self.enabled:
            return
        path = os.path.join(self.directory, 'valid.csv')
        new = not os.path.exists(path)
        with open(path, 'a') as f:
            if new:
                f.write('step,epoch,' + ','.join(metrics) + '\n')
            f.write(f"{state['step']},{state['epoch']}," + ','.join(f'{v:.6f}' for v in metrics.values()) + '\n')

    def close(self):
        if self.enabled:
            self.writer.close()
            self.file.close()


# ---------------------------------------------------------------- main loop

def main(argv=None):
    args = parse_args(argv)
    if args.check_data:
        return check_data(args)
    set_device(args.device)
    world, rank = paddle.distributed.get_world_size(), paddle.distributed.get_rank()
    if world > 1:
        paddle.distributed.init_parallel_env()
    gpu = args.device == 'gpu'
    train_loader, sampler, valid_loader = make_loaders(args, load_roots(args.dataset_config, args.dataset_root))

    checkpoints = Checkpoints(os.path.join(args.checkpoint_dir, args.name), args.keep_checkpoints)
    log = Logger(os.path.join(args.log_dir, args.name), rank == 0)
    resume = (checkpoints.complete() if args.resume == 'auto' else [args.resume]) if args.resume else []
    paddle.seed(args.seed)                  # the same initial weights on every rank and in every rerun
    model = build_model(**model_options(args))
    if args.model_checkpoint and not resume:
        loaded, skipped = load_weights(model, args.model_checkpoint)
        log.text(f'{args.model_checkpoint}: initialised {len(loaded)} of {len(model.state_dict())} tensors '
                 f'(name and shape match), skipped {len(skipped)}')
    sync_bn = gpu and world > 1            # SyncBatchNorm has no CPU kernel
    if sync_bn:
        model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    freeze_pool_bn = args.batch_size == 1 and not sync_bn
    optimizer = build_optimizer(model, args)
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if gpu and not args.no_amp else None
    net = paddle.DataParallel(model) if world > 1 else model

    state = {'step': 0, 'epoch': 0, 'batch': 0, 'seconds': 0.0}
    if resume:
        state = Checkpoints.load(resume[-1], model, optimizer, scaler)
        log.text(f"resumed {resume[-1]}: epoch {state['epoch']}, step {state['step']}")
    elif args.resume:
        log.text(f'--resume: no complete checkpoint in {checkpoints.directory} yet; starting afresh')
    if freeze_pool_bn:
        log.text('batch of 1 per device: the BatchNorm of ASPP image pooling keeps its running statistics')
    weights = LossWeights.from_args(args)
    log.text(f'{args.model_type}/{args.model_backbone} on {world} x {args.device}: {len(train_loader.dataset)} '
             f'training samples, {len(sampler)} steps per epoch, batch {args.batch_size} per process')

    def checkpoint():
        if rank == 0:
            checkpoints.save(model, optimizer, scaler, dict(state, model_type=args.model_type,
                                                            backbone=args.model_backbone))

    def run_validation():
        if rank == 0 and valid_loader is not None:
            metrics = validate(model, valid_loader)
            log.scalars('Evaluate', metrics, state['step'])
            log.valid_row(state, metrics)
            log.text(f"valid step {state['step']}: " + ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
        train_mode(model, freeze_pool_bn)

    lrs = {name: getattr(args, f'lr_{name}') for name in MODULES if hasattr(model, name)}
    log.scalars('Train/lr', lrs, state['step'])
    train_mode(model, freeze_pool_bn)
    if state['batch'] >= len(sampler):
        state.update(epoch=state['epoch'] + 1, batch=0)
    done = args.max_steps is not None and state['step'] >= args.max_steps
    while state['epoch'] < args.epochs and not done:
        sampler.set_position(state['epoch'], state['batch'])
        bar = tqdm(train_loader, total=len(sampler), initial=state['batch'], desc=f"epoch {state['epoch']}",
                   disable=rank != 0 or not sys.stderr.isatty(), mininterval=1)
        tick = time.time()
        for batch in bar:
            loss, terms = train_step(net, optimizer, scaler, batch, args, weights, state['step'])
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {state['step']}: lower the learning rates")
            seconds = time.time() - tick          # loading + step, without the logging below
            state['step'] += 1
            state['batch'] += 1
            state['seconds'] += seconds
            speed = args.batch_size * world / seconds
            bar.set_postfix(loss=f'{loss:.4f}', img_s=f'{speed:.2f}')
            step = state['step']
            if step % args.log_interval == 0:
                log.scalars('Train', dict(terms, loss=loss, samples_per_sec=speed), step)
                log.text(f"epoch {state['epoch']} step {step} loss {loss:.4f} " +
                         ' '.join(f'{k} {v:.4f}' for k, v in terms.items()) + f' {speed:.2f} samples/s')
            if step % args.image_interval == 0 and rank == 0:
                with paddle.no_grad():
                    model.eval()
                    log.image('Train/images', image_grid(batch, model(batch[2][:1], batch[3][:1])), step)
                    train_mode(model, freeze_pool_bn)
            if step % args.valid_interval == 0:
                run_validation()
            done = args.max_steps is not None and step >= args.max_steps
            if step % args.checkpoint_interval == 0 or done:
                checkpoint()
            if done:
                break
            tick = time.time()
        bar.close()
        if not done:
            checkpoint()
            state.update(epoch=state['epoch'] + 1, batch=0)
    if state['step'] % args.valid_interval:
        run_validation()
    if rank == 0:
        save_atomic(model.state_dict(), os.path.join(checkpoints.directory, 'final.pdparams'))
        log.text(f"done: step {state['step']}, {state['seconds'] / 60:.1f} min of training, "
                 f"weights {os.path.join(checkpoints.directory, 'final.pdparams')}")
    log.close()


if __name__ == '__main__':
    raise SystemExit(main())
