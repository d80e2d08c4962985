"""Declaring options: a dataclass field that is also a command-line option, and the value checks they use.

Only declarations live here (families and config.py declare their options with them); config.py turns them into
argparse arguments and resolves them. Nothing here reads parsed arguments.
"""
import argparse
from dataclasses import field


def option(default, flag, help, **argparse_kwargs):
    """A dataclass field that is also a command-line option. `argparse_kwargs` go to add_argument; in them
    `default_help` replaces the '(default: X)' text for defaults that vary (by family, model type, machine;
    '{default}' in it stands for the default) and `aliases` adds flags."""
    return field(default=default, metadata=dict(flag=flag, help=help, **argparse_kwargs))


def checked(kind, test, requirement):
    """An argparse type: `kind(text)`, which must pass `test`; else the error says it must be `requirement`."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    convert.__name__ = kind.__name__
    return convert


positive_int = checked(int, lambda v: v >= 1, 'at least 1')
non_negative_int = checked(int, lambda v: v >= 0, '0 or more')
non_negative = checked(float, lambda v: v >= 0, '0 or more')
ratio = checked(float, lambda v: 0 < v <= 1, 'in (0, 1]')


def boolean(text):
    if text.lower() in ('true', '1', 'yes'):
        return True
    if text.lower() in ('false', '0', 'no'):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
