import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, 'tests', 'data')


def build_model(model_type, backbone, **options):
    """The untrained network the family registry builds for these options (the tests' shorthand)."""
    import config
    import families
    spec = families.family_of(model_type)
    return spec.build(config.ModelConfig(model_type=model_type, backbone=backbone, device='cpu', family=spec.name,
                                         options=spec.options(**options)))
