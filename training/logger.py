"""Training logs of rank 0: VisualDL scalars and images, log/<name>/train.log and valid.csv."""
import os
import time

from tqdm import tqdm

from utils.io import make_dirs


class Logger:
    """Rank 0: VisualDL scalars/images, log/<name>/train.log and valid.csv; other ranks stay quiet."""

    def __init__(self, directory, enabled):
        self.enabled, self.directory = enabled, directory
        if enabled:
            from visualdl import LogWriter
            make_dirs(directory)
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
