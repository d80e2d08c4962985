"""The shared model options resolve to the right network for every model type and backbone."""
import argparse

import pytest

from utils.options import add_model_args, demo_card, model_options


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize('argv,expected', [
    ((), ('mattingrefine', 'mobilenetv2')),
    (('--model-backbone', 'resnet50'), ('mattingrefine', 'resnet50')),          # also an RVM backbone
    (('--model-type', 'mattingbase', '--model-backbone', 'resnet101'), ('mattingbase', 'resnet101')),
    (('--model-type', 'rvm'), ('rvm', 'mobilenetv3')),
    (('--model-type', 'rvm', '--model-backbone', 'resnet50'), ('rvm', 'resnet50')),
])
def test_model_type_and_backbone(argv, expected):
    options = model_options(parse(*argv))
    assert (options['model_type'], options['backbone']) == expected


@pytest.mark.parametrize('argv', [('--model-type', 'rvm', '--model-backbone', 'mobilenetv2'),
                                  ('--model-backbone', 'mobilenetv3')])
def test_backbone_of_the_other_family_is_refused(argv):
    with pytest.raises(ValueError, match='does not fit'):
        model_options(parse(*argv))


def test_backbone_scale_default():
    assert model_options(parse('--model-checkpoint', 'x.pdparams'))['backbone_scale'] == 0.25
    assert model_options(parse('--model-backbone-scale', '0.5'))['backbone_scale'] == 0.5
    assert model_options(parse())['backbone_scale'] == demo_card().get('backbone_scale', 0.25)
