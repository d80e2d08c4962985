"""Web demo: upload a photo and its plate (BGMv2), a video alone (RVM) or a photo and a trimap (IndexNet), see and
download the matte, the foreground and the composite.

    python3 app.py                      # http://127.0.0.1:7860
    python3 app.py --port 8080 --host 0.0.0.0

The page's fields are predict.py's options (the same results for the same inputs); needs `pip install -r
requirements-app.txt` (Gradio). Nothing is fetched from the internet.
"""
import argparse
import glob
import os
import sys

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')     # no usage reports, no version check

import families  # noqa: E402
import predict  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


class Matting:
    """predict.py's flow for an argument list, with the networks of earlier requests kept loaded."""

    def __init__(self):
        self.networks = {}

    def network(self, model):
        if model not in self.networks:
            self.networks = {model: families.load(model)}          # one at a time: they are large
        return self.networks[model]

    def __call__(self, argv):
        try:
            args = predict.parser().parse_args(argv)
        except SystemExit:                      # argparse printed why to the server's log
            raise ValueError('the form gave predict.py an option it does not take (see the server log)') from None
        cfg, summary = predict.run(args, self.network)
        if summary.failures:
            raise ValueError(summary.failures[0])
        return cfg.output_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--port', type=int, default=7860, help='port to serve on (default 7860)')
    p.add_argument('--host', default='127.0.0.1', help='address to serve on (default 127.0.0.1, this machine only)')
    args = p.parse_args(argv)
    try:
        import gradio as gr
    except ImportError:
        sys.exit('error: the web demo needs Gradio: pip install -r requirements-app.txt')
    from inference.web import build
    checkpoints = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'model', 'weights', '**',
                                                                                   '*.pdparams'), recursive=True))
    demo = build(Matting(), checkpoints)
    theme = gr.themes.Default(font=[gr.themes.Font('system-ui'), gr.themes.Font('sans-serif')],
                              font_mono=[gr.themes.Font('monospace')])      # system fonts: no font download
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, theme=theme,
                                                   show_error=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
