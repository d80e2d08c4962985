"""The training loop every family's task plugs into (training/bgmv2.py, training/indexnet.py): distributed
setup, data loading in worker processes, steps, logging, validation, atomic checkpoints with rotation, resume,
the final weights and their card. A task subclasses Task.
"""
import dataclasses
import json
import os
import sys
import time

import numpy as np
import paddle
from tqdm import tqdm

from utils.checkpoint import load_weights, save_atomic
from utils.device import set_device
from utils.onednn import accelerate, status as onednn_status
from utils.io import atomic_path

from .checkpoints import Checkpoints
from .loader import BatchLoader
from .logger import Logger


class Task:
    """What a family's training provides. `options`: the dataclass of its command-line options; `defaults`: the
    defaults it gives the shared options (batch size, resolution, intervals) and its own (config.py resolves
    them)."""
    options = None
    defaults = {}
    unused_parameters = False       # True when a pass leaves parameters without gradients (DataParallel must know)

    def check(self, data, run):
        """ValueError for options that cannot train."""

    def describe_data(self, data, options):
        """One line on the training data, or ValueError naming what is missing (train.py --check-data)."""
        raise NotImplementedError

    def datasets(self, data, run, options, rank, world):
        """(train dataset, its batch sampler, collate, validation (dataset, [batches], collate) or None, note)."""
        raise NotImplementedError

    def initialise(self, network):
        """The task's own initialisation of a freshly built network, before any --checkpoint weights are loaded."""

    def optimizer(self, network, options):
        raise NotImplementedError

    def start_epoch(self, optimizer, options, epoch):
        """Called before every epoch (learning-rate schedules)."""

    def learning_rates(self, network, options):
        """{group: rate} logged at the start."""
        return {}

    def train_mode(self, network, single_sample, options):
        network.train()

    def single_sample_note(self):
        return ''

    def passes(self, batch, options):
        """[(log prefix, inputs)] of one step: each pass is a forward, a loss and an optimiser step of its own."""
        return [('', batch)]

    def forward(self, net, batch):
        raise NotImplementedError

    def loss(self, outputs, batch, options):
        """-> (total, {term: value})."""
        raise NotImplementedError

    def validate(self, network, batches):
        """{metric: mean} over the validation batches (network in eval mode)."""
        raise NotImplementedError

    def image_grid(self, network, batch):
        raise NotImplementedError


def card(model):
    """A checkpoint card's "config" entry: what predict/eval need to rebuild this network."""
    return {'family': model.family, 'model_type': model.model_type, 'backbone': model.backbone,
            **dataclasses.asdict(model.options)}


def write_card(weights, model, **extra):
    with atomic_path(os.path.splitext(weights)[0] + '.json') as tmp, open(tmp, 'w') as f:
        json.dump({'config': card(model), **extra}, f, indent=1)


def seed_step(seed, step, rank):
    """Paddle's generator (dropout) is reseeded per step, so a resumed run draws the same masks."""
    paddle.seed(seed * 1_000_003 + step * 101 + rank)


def module_adam(network, rates):
    """Adam with one parameter group per set of modules at its own rate ({(module names): rate}; Paddle multiplies
    the global rate 1.0 by the group's); modules at rate 0 are frozen: no gradients, no optimiser state."""
    groups = []
    for modules, lr in rates.items():
        params = [p for name in modules if getattr(network, name, None) is not None
                  for p in getattr(network, name).parameters()]
        for param in params:
            param.stop_gradient = lr == 0
        if lr > 0 and params:
            groups.append({'params': params, 'learning_rate': lr})
    if not groups:
        raise ValueError('every learning rate is 0: nothing to train')
    return paddle.optimizer.Adam(learning_rate=1.0, parameters=groups)


def pass_step(task, net, optimizer, scaler, inputs, options):
    """One pass: forward, loss, backward, optimiser step -> (loss, {term: value})."""
    with paddle.amp.auto_cast(enable=scaler is not None):
        outputs = task.forward(net, inputs)
    loss, terms = task.loss(outputs, inputs, options)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    optimizer.clear_grad(set_to_zero=False)   # None, not zeros: Adam must skip what the next pass leaves unused
    return float(loss), {k: float(v) for k, v in terms.items()}


def train_step(task, net, optimizer, scaler, batch, options):
    """One step: each of the task's passes (pass_step). Returns (sum of the passes' losses, {prefixed term: value})."""
    total, logged = 0.0, {}
    for prefix, inputs in task.passes(batch, options):
        loss, terms = pass_step(task, net, optimizer, scaler, inputs, options)
        total += loss
        logged.update({prefix + k: v for k, v in terms.items()})
        if prefix:
            logged[prefix + 'total'] = loss
    return total, logged


def train(model, data, run, options, task, build):
    """Train `build(model)` (a network) with a family's task. model: ModelConfig (its checkpoint: initial
    weights, loaded where name and shape match); data: DataConfig; run: TrainConfig; options: the task's."""
    task.check(data, run)
    set_device(model.device)
    world, rank = paddle.distributed.get_world_size(), paddle.distributed.get_rank()
    if world > 1:
        paddle.distributed.init_parallel_env()
    gpu = model.device == 'gpu'
    train_set, sampler, collate, valid, note = task.datasets(data, run, options, rank, world)
    checkpoints = Checkpoints(os.path.join(run.checkpoint_dir, run.name), run.keep_checkpoints)
    log = Logger(os.path.join(run.log_dir, run.name), rank == 0)
    if note:
        log.text(note)
    resume = checkpoints.find(run.resume) if run.resume else None
    paddle.seed(run.seed)                  # the same initial weights on every rank and in every rerun
    network = build(model)
    routed = accelerate(network, model.device, model.cpu_kernels)
    task.initialise(network)
    if model.checkpoint and not resume:
        loaded, skipped = load_weights(network, model.checkpoint)
        log.text(f'{model.checkpoint}: initialised {len(loaded)} of {len(network.state_dict())} tensors '
                 f'(name and shape match), skipped {len(skipped)}')
    sync_bn = gpu and world > 1            # SyncBatchNorm has no CPU kernel
    if sync_bn:
        network = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    single_sample = run.batch_size == 1 and not sync_bn
    optimizer = task.optimizer(network, options)
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if gpu and not run.no_amp else None
    net = paddle.DataParallel(network, find_unused_parameters=task.unused_parameters) if world > 1 else network

    state = {'step': 0, 'epoch': 0, 'batch': 0, 'seconds': 0.0}
    if resume:
        state = Checkpoints.load(resume, network, optimizer, scaler)
        log.text(f"resumed {resume}: epoch {state['epoch']}, step {state['step']}")
    elif run.resume:
        log.text(f'--resume: no complete checkpoint in {checkpoints.directory} yet; starting afresh')
    if single_sample and task.single_sample_note():
        log.text(task.single_sample_note())
    log.text(f'{model.model_type}/{model.backbone} on {world} x {model.device}: {len(train_set)} training samples, '
             f'{len(sampler)} steps per epoch, batch {run.batch_size} per process')
    if model.device == 'cpu' and model.cpu_kernels == 'onednn':
        log.text(f'CPU kernels: oneDNN ({routed} convolution layers, bilinear resizes)' if routed else
                 f'CPU kernels: Paddle\'s (oneDNN unavailable: {onednn_status()})')

    loader = BatchLoader(train_set, sampler, collate, data.num_workers)
    valid_loader = BatchLoader(*valid, workers=min(data.num_workers, 1)) if valid else None

    def checkpoint():
        if rank == 0:
            checkpoints.save(network, optimizer, scaler, dict(state, config=card(model)))

    def validation():
        if rank == 0 and valid_loader is not None:
            network.eval()
            metrics = task.validate(network, valid_loader)
            log.scalars('Evaluate', metrics, state['step'])
            log.valid_row(state, metrics)
            log.text(f"valid step {state['step']}: " + ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
        task.train_mode(network, single_sample, options)

    try:
        log.scalars('Train/lr', task.learning_rates(network, options), state['step'])
        task.train_mode(network, single_sample, options)
        if state['batch'] >= len(sampler):
            state.update(epoch=state['epoch'] + 1, batch=0)
        done = run.max_steps is not None and state['step'] >= run.max_steps
        while state['epoch'] < run.epochs and not done:
            task.start_epoch(optimizer, options, state['epoch'])
            sampler.set_position(state['epoch'], state['batch'])
            bar = tqdm(total=len(sampler), initial=state['batch'], desc=f"epoch {state['epoch']}",
                       disable=rank != 0 or not sys.stderr.isatty(), mininterval=1)
            tick = time.time()
            for arrays in loader:
                batch = [paddle.to_tensor(a) for a in arrays]
                seed_step(run.seed, state['step'], rank)
                loss, terms = train_step(task, net, optimizer, scaler, batch, options)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {state['step']}: lower the learning rates")
                seconds = time.time() - tick          # loading + step, without the logging below
                state['step'] += 1
                state['batch'] += 1
                state['seconds'] += seconds
                speed = run.batch_size * world / seconds
                bar.update()
                bar.set_postfix(loss=f'{loss:.4f}', img_s=f'{speed:.2f}')
                step = state['step']
                if step % run.log_interval == 0:
                    log.scalars('Train', dict(terms, loss=loss, samples_per_sec=speed), step)
                    log.text(f"epoch {state['epoch']} step {step} loss {loss:.4f} " +
                             ' '.join(f'{k} {v:.4f}' for k, v in terms.items()) + f' {speed:.2f} samples/s')
                if step % run.image_interval == 0 and rank == 0:
                    network.eval()
                    log.image('Train/images', task.image_grid(network, batch), step)
                    task.train_mode(network, single_sample, options)
                if step % run.valid_interval == 0:
                    validation()
                done = run.max_steps is not None and step >= run.max_steps
                if step % run.checkpoint_interval == 0 or done:
                    checkpoint()
                if done:
                    break
                tick = time.time()
            bar.close()
            if not done:
                checkpoint()
                state.update(epoch=state['epoch'] + 1, batch=0)
        if state['step'] % run.valid_interval:
            validation()
        if rank == 0:
            final = os.path.join(checkpoints.directory, 'final.pdparams')
            save_atomic(network.state_dict(), final)
            write_card(final, model, step=state['step'], seconds=state['seconds'])
            log.text(f"done: step {state['step']}, {state['seconds'] / 60:.1f} min of training, weights {final}")
    finally:
        loader.close()
        if valid_loader is not None:
            valid_loader.close()
        log.close()
    return state
