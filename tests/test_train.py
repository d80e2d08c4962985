"""train.py end to end on a tiny generated set: learning, kill-and-resume, two CPU processes, edge cases."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import config
import train
from conftest import build_model, kill_and_resume
from tools import make_synthetic_data
from training.loader import BatchLoader, load_batch
from utils.checkpoint import read_card

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')
    make_synthetic_data.main(['--out', str(root), '--num-train', '8', '--num-valid', '2', '--num-backgrounds', '4',
                              '--size', '80'])
    return root


def base_args(data, out, *extra):
    return ['--dataset-root', f'syn={data}', '--dataset-root', f'synbg={data / "backgrounds"}', '--dataset-name', 'syn',
            '--background-name', 'synbg', '--resolution', '64', '--num-workers', '0', '--device', 'cpu',
            '--checkpoint-dir', str(out / 'ck'), '--log-dir', str(out / 'log'), '--valid-samples', '2',
            '--epochs', '100', *extra]


def resolve(argv):
    """(ModelConfig, DataConfig, TrainConfig, training options, task) as train.py resolves them."""
    args = train.parser().parse_args(argv)
    model = config.resolve_model(args, read_card, demo=False)
    return (model, *config.resolve_train(args, model), model.spec.trainer(model.model_type))


def state_dict(path):
    return {k: np.asarray(v) for k, v in paddle.load(path).items()}


def test_loss_falls_and_validation_improves(data, tmp_path):
    argv = base_args(data, tmp_path, '--model-type', 'mattingbase', '--batch-size', '4', '--max-steps', '30',
                     '--name', 'learn', '--log-interval', '1', '--valid-interval', '1000', '--checkpoint-interval', '1000',
                     '--image-interval', '30')
    model, data_cfg, run, options, task = resolve(argv)
    train_set, sampler, collate, valid, _ = task.datasets(data_cfg, run, options, 0, 1)
    batch = [paddle.to_tensor(a) for a in load_batch(train_set, collate, next(iter(sampler)))[0]]

    def measure(network):
        network.train()
        paddle.seed(7)
        with paddle.no_grad():
            loss = task.loss(task.forward(network, batch), batch, options)[0]
        network.eval()
        return float(loss), task.validate(network, BatchLoader(*valid, workers=0))['SAD']

    paddle.seed(run.seed)
    loss0, sad0 = measure(build_model('mattingbase', 'mobilenetv2'))      # the initial weights of the run
    train.main(argv)
    trained = build_model('mattingbase', 'mobilenetv2')
    trained.set_state_dict(paddle.load(str(tmp_path / 'ck' / 'learn' / 'final.pdparams')))
    loss1, sad1 = measure(trained)
    assert loss1 < 0.7 * loss0, (loss0, loss1)
    assert sad1 < 0.9 * sad0, (sad0, sad1)
    log = (tmp_path / 'log' / 'learn' / 'train.log').read_text()
    assert log.count(' loss ') == 30 and 'valid step 30: SAD' in log
    assert (tmp_path / 'log' / 'learn' / 'valid.csv').read_text().startswith('step,epoch,SAD,MSE')
    from visualdl import LogReader
    records, = (tmp_path / 'log' / 'learn').glob('vdlrecords*')
    tags = LogReader(file_path=str(records)).get_tags()
    assert 'Train/images' in tags['image'] and {'Train/loss', 'Train/sobel', 'Evaluate/SAD'} <= set(tags['scalar'])


def test_killed_run_resumes_to_the_uninterrupted_state(data, tmp_path):
    init = tmp_path / 'base.pdparams'
    paddle.seed(3)
    paddle.save(build_model('mattingbase', 'mobilenetv2').state_dict(), str(init))   # --checkpoint by name + shape
    common = base_args(data, tmp_path, '--model-type', 'mattingrefine', '--batch-size', '2', '--max-steps', '6',
                       '--checkpoint-interval', '2', '--keep-checkpoints', '10', '--valid-interval', '1000',
                       '--checkpoint', str(init), '--resume')
    whole, _ = kill_and_resume(train.main, common, tmp_path)
    assert 'refiner.conv1.weight' in whole
    states = [json.loads((tmp_path / 'ck' / n / 'step-0000006.json').read_text()) for n in ('whole', 'killed')]
    assert [(s['step'], s['epoch'], s['batch']) for s in states] == [(6, 1, 2)] * 2


def test_two_cpu_processes_under_distributed_launch(data, tmp_path):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir',
           str(tmp_path / 'launch'), os.path.join(ROOT, 'train.py'),
           *base_args(data, tmp_path, '--model-type', 'mattingbase', '--batch-size', '2', '--max-steps', '2',
                      '--name', 'ddp', '--valid-interval', '1000')]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    logs = ''.join(p.read_text() for p in (tmp_path / 'launch').glob('*.log'))
    assert result.returncode == 0, result.stderr[-3000:] + logs[-3000:]
    log = (tmp_path / 'log' / 'ddp' / 'train.log').read_text()
    assert 'on 2 x cpu' in log and '2 steps per epoch' in log            # 8 samples / (2 ranks x 2)
    assert (tmp_path / 'ck' / 'ddp' / 'final.pdparams').exists()


def test_batch_of_one_keeps_the_pooling_batchnorm_statistics(data, tmp_path):
    train.main(base_args(data, tmp_path, '--model-type', 'mattingbase', '--batch-size', '1', '--max-steps', '2',
                         '--name', 'one', '--valid-interval', '1000'))
    weights = state_dict(str(tmp_path / 'ck' / 'one' / 'final.pdparams'))
    assert np.all(weights['aspp.convs.4.2._mean'] == 0) and np.all(weights['aspp.convs.4.2._variance'] == 1)
    assert np.any(weights['aspp.convs.0.1._mean'] != 0)                  # the other BNs did train
    assert 'keeps its running statistics' in (tmp_path / 'log' / 'one' / 'train.log').read_text()


def test_data_errors_name_the_dataset_and_path(data, tmp_path, capsys):
    argv = base_args(data, tmp_path, '--model-type', 'mattingbase', '--dataset-root', f'syn={tmp_path / "absent"}')
    assert train.main(argv + ['--check-data']) == 1
    out = capsys.readouterr().out
    assert "dataset 'syn'" in out and str(tmp_path / 'absent') in out
    assert train.main(base_args(data, tmp_path, '--model-type', 'mattingbase', '--check-data')) == 0
    *_, options, task = resolve(argv + ['--lr-backbone', '0', '--lr-aspp', '0', '--lr-decoder', '0'])
    with pytest.raises(ValueError, match='every learning rate is 0'):
        task.optimizer(build_model('mattingbase', 'mobilenetv2'), options)


def test_training_benchmark_splits_a_real_step(monkeypatch):
    """tools/bench_train.py --split times forward, losses, backward and Adam of the real step, and the official
    comparison says why it cannot run instead of failing (torch is never installed by this project)."""
    from tools import bench_train, speed_test
    monkeypatch.setattr(speed_test, 'import_official', lambda path: (None, f'{path}: not available here'))
    ours, official = bench_train.bench_step('mattingbase', None, 64, 2, 2, 'cpu', split=True, compare_torch='/nowhere')
    assert list(ours['parts']) == ['forward', 'loss', 'backward', 'optimizer']
    assert all(v > 0 for v in ours['parts'].values())
    assert sum(ours['parts'].values()) == pytest.approx(ours['sec_per_iter'], rel=0.2)
    assert official == {'what': '--compare-torch: /nowhere: not available here'}


def test_benchmark_interleaves_ours_and_the_official_step():
    """Both sides' steps alternate after one warm-up each, so drift of the machine's speed hits both alike; each
    step's time is the sum of its parts."""
    from tools.bench_train import timed
    calls = []
    steps = [{'forward': lambda: calls.append('ours'), 'backward': lambda: time.sleep(0.002)},
             {'step': lambda: calls.append('official')}]
    (ours_parts, ours_times), (_, official_times) = timed(steps, 3)
    assert calls == ['ours', 'official'] * 4
    assert len(ours_times) == len(official_times) == 3
    assert ours_parts['backward'] >= 0.002 and all(t >= 0.002 for t in ours_times)


@pytest.mark.parametrize('freeze', [False, True])
def test_frozen_bn_statistics_stay_while_the_weights_train(freeze):
    """--freeze-bn-statistics: a training pass changes the weights (BN scale and shift too) but no running mean
    or variance; without it the statistics move."""
    from training.loop import pass_step
    _, _, run, options, task = resolve(['--model-type', 'mattingbase', '--device', 'cpu', '--batch-size', '2'] +
                                       (['--freeze-bn-statistics'] if freeze else []))
    paddle.seed(0)
    net = build_model('mattingbase', 'mobilenetv2')
    task.train_mode(net, False, options)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    inputs = [paddle.rand([2, c, 64, 64]) for c in (1, 3, 3, 3)]
    pass_step(task, net, task.optimizer(net, options), None, inputs, options)
    after = net.state_dict()
    moved = {k for k in before if not np.array_equal(before[k], after[k].numpy())}
    statistics = {k for k in before if k.endswith(('_mean', '_variance'))}
    assert statistics and ('backbone.features.0.1.weight' in moved) and ('aspp.project.1.bias' in moved)
    assert (moved & statistics == set()) if freeze else (statistics <= moved)
