"""Training checkpoints: checkpoint/<name>/step-N.{pdparams,pdopt,json} (+ .pdscaler with AMP), the .json
written last so that it marks a complete checkpoint, the oldest beyond --keep-checkpoints removed."""
import glob
import json
import os

import paddle

from utils.checkpoint import load_weights, save_atomic
from utils.io import atomic_path, make_dirs


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
        make_dirs(directory)

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

    def find(self, resume):
        """The state file --resume names: the last complete checkpoint ('auto'), or the given step-N.json."""
        if resume == 'auto':
            complete = self.complete()
            return complete[-1] if complete else None
        if not resume.endswith('.json') or not os.path.isfile(resume):
            raise ValueError(f"--resume {resume}: not a checkpoint state file (checkpoint/<name>/step-N.json)")
        return resume

    @staticmethod
    def load(path, model, optimizer, scaler):
        try:
            with open(path) as f:
                state = json.load(f)
            state['step'], state['epoch'], state['batch']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a readable checkpoint state ({e}); delete it to resume from the one "
                             f"before") from None
        prefix = path[:-len('.json')]
        load_weights(model, prefix + '.pdparams', strict=True)
        try:        # files this project wrote next to the weights it has just checked
            optimizer.set_state_dict(rename_optimizer_state(paddle.load(prefix + '.pdopt'), model, False))
            if scaler is not None and os.path.exists(prefix + '.pdscaler'):
                scaler.load_state_dict(paddle.load(prefix + '.pdscaler'))
        except Exception as e:      # noqa: BLE001 - paddle.load raises many kinds; the message says which file
            raise ValueError(f"{prefix}.pdopt: cannot restore the optimiser state ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
        return state
