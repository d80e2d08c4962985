"""What every model family declares, and the one-line refusal of a capability a family does not have yet."""
import dataclasses
import os

import numpy as np

from inference.backends import installed


class Unavailable(ValueError):
    """A family lacks a capability (e.g. "training for rvm is not available yet")."""


class Family:
    """One model family: its networks, options, checkpoints, outputs, runner, protocols and training.

    Subclasses set the attributes and override the methods of what they can do; the defaults refuse."""
    name = ''                   # registry key, e.g. 'bgmv2'
    title = ''                  # for messages, e.g. 'BackgroundMattingV2'
    model_types = ()            # --model-type values
    backbones = ()              # --model-backbone values
    default_backbone = ''
    options = None              # frozen dataclass of the family's model options (config.option fields)
    partner = None              # the second input: 'bgr' (plate), 'trimap', 'mask' (first frame's objects), or None
    demo_checkpoint = None      # shipped weights used when no --model-checkpoint is given
    protocols = ()              # eval.py protocols, the first is the family's default
    export_formats = ('pdmodel', 'json')   # tools/export.py --format values, the first is the default
    export_defaults = {}        # options whose default differs in an export (a fixed graph needs a value)
    onnx_unavailable = None     # why tools/export.py --onnx cannot convert this family yet, if it cannot
    signatures = ()             # (model_type, backbone, key prefixes that must all occur, options) per layout
    strict_loading = {}         # backbone -> prefixes of the only checkpoint entries its network may skip
    auto_frames = 8             # --backend auto: an exported graph on CPU above this many inputs (exports take seconds)
    auto_backends = ('inference',)  # the exported backends 'auto' takes, fastest here first; the first installed wins

    def backbone_for(self, model_type):
        """The backbone a model type gets when none is given."""
        return self.default_backbone

    def build(self, model):
        """ModelConfig -> the untrained network."""
        raise Unavailable(f'{self.name} has no networks yet')

    def outputs(self, model_type):
        """The namedtuple type of the network's outputs (its fields are the output names)."""
        raise Unavailable(f'{self.name} has no networks yet')

    def output_types(self, model_type):
        """What predict.py can write for this model type (of config.OUTPUT_TYPES)."""
        return ()

    def backend_for(self, backend, model, frames):
        """The backend name of a BackendConfig for `frames` inputs: 'auto' is the first installed of auto_backends
        on CPU above auto_frames inputs (their convolutions are several times dygraph's), else dygraph."""
        if backend.backend != 'auto':
            return backend.backend
        if model.device != 'cpu' or frames <= self.auto_frames:
            return 'dygraph'
        return next((name for name in self.auto_backends if installed(name)), 'dygraph')

    def runner(self, model, network, backend, frames):
        """A runner for predict/eval: frames in, named numpy outputs back (see families/bgmv2.py)."""
        raise Unavailable(f'prediction for {self.name} is not available yet')

    def predict(self, cfg, model, backend, load):
        """predict.py: every input of a PredictConfig -> inference.predict.Summary. The matting flow (images and
        clips through the family's runner); `load(model)` gives the network."""
        from inference.predict import predict
        wanted = set(cfg.output_types) | {'pha', 'fgr'}
        return predict(cfg, lambda frames: self.runner(model, load(model), backend, frames, wanted), self.partner,
                       cfg.batch_size if self.partner else cfg.seq_chunk)

    def example_inputs(self, n, h, w, rng):
        """Random (frames, partner) of a runner for the speed test: N x H x W x 3 images and the partner input
        (a plate, a trimap, or None)."""
        frames = rng.random((n, h, w, 3), dtype=np.float32)
        return frames, (rng.random((n, h, w, 3), dtype=np.float32) if self.partner == 'bgr' else None)

    def export_layer(self, model, network):
        """(layer to trace, its InputSpecs or None for src and bgr, description for export.json)."""
        raise Unavailable(f'export for {self.name} is not available yet')

    def export_graphs(self, model, network):
        """([(subfolder, layer, InputSpecs or None, output names)], description for export.json) of tools/export.py:
        by default the one graph of export_layer, in the output folder itself."""
        layer, spec, meta = self.export_layer(model, network)
        return [('', layer, spec, list(self.outputs(model.model_type)._fields))], meta

    def trainer(self, model_type):
        """The training task of training/ for this model type."""
        raise Unavailable(f'training for {model_type} is not available yet')

    def signature_of(self, keys):
        """(model_type, backbone, options) of a state dict with these keys, or None."""
        keys = list(keys)
        for model_type, backbone, prefixes, options in self.signatures:
            if all(any(k.startswith(p) for k in keys) for p in prefixes):
                return model_type, backbone, dict(options)
        return None


def describe(model):
    """A ModelConfig as plain values (for results files and export.json): checkpoint, type, backbone, options."""
    checkpoint = os.path.abspath(model.checkpoint) if model.checkpoint else None
    return {'checkpoint': checkpoint, 'checkpoint_mtime_ns': os.stat(checkpoint).st_mtime_ns if checkpoint else None,
            'model_type': model.model_type, 'backbone': model.backbone, **dataclasses.asdict(model.options)}
