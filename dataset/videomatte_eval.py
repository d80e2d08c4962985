"""The composited video test layout of Robust Video Matting's evaluation (spec/rvm.md 4.1):
`<root>/[<dataset>/]<clip>/{com,fgr,pha,bgr}/<frame>.png` - composite, true foreground, true alpha and the
background of every frame (the published sets: videomatte_512x288/ and videomatte_1920x1080/, each with
videomatte_static/ and videomatte_motion/ clips). A prediction folder mirrors it with `<clip>/{pha,fgr}/`.

A clip is any folder with a `pha/` child, found at any depth and named by its path relative to the root
('videomatte_static/0003'); its frames are the files of `pha/` in name order, and the other parts pair
with them by file name without the extension (a .jpg composite pairs with a .png matte).
"""
import os

from utils.io import ImageReadError, list_images

PARTS = ('com', 'fgr', 'pha', 'bgr')


def find_clips(root):
    """Sorted [(name, clip folder)] of every folder under `root` (or `root` itself) that has a pha/ child."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: folder not found")
    clips = []
    for directory, subdirs, _ in os.walk(root):
        subdirs.sort()
        if os.path.isdir(os.path.join(directory, 'pha')):
            name = os.path.relpath(directory, root).replace(os.sep, '/')
            clips.append((os.path.basename(os.path.abspath(root)) if name == '.' else name, directory))
            subdirs.clear()         # its children are the frame folders
    return clips


def is_composited_layout(root):
    """True if `root` holds clips with composites (com/ next to pha/): the video protocol's test set."""
    return os.path.isdir(root) and any(os.path.isdir(os.path.join(d, 'com')) for _, d in find_clips(root))


def frames_by_stem(directory):
    """{frame name without extension: path} of one frame folder; two files of the same name are an error."""
    table = {}
    for path in list_images(directory):
        stem = os.path.splitext(os.path.relpath(path, directory))[0].replace(os.sep, '/')
        if stem in table:
            raise ValueError(f"{directory}: {os.path.basename(table[stem])} and {os.path.basename(path)} "
                             f"have the same frame name")
        table[stem] = path
    return table


def clip_frames(clip_dir, parts, optional=(), frames=None):
    """[(frame, {part: path})] in frame order, for `frames` (default: the files of clip_dir/pha/). Every part
    in `parts` must have every frame (an ImageReadError names the first missing file); a part in `optional`
    whose folder is absent is left out, but a present one must be complete too."""
    if frames is None:
        frames = sorted(frames_by_stem(os.path.join(clip_dir, 'pha')))
        if not frames:
            raise ValueError(f"{os.path.join(clip_dir, 'pha')}: no frames")
    tables = {}
    for part in tuple(parts) + tuple(optional):
        folder = os.path.join(clip_dir, part)
        if part in optional and not os.path.isdir(folder):
            continue
        tables[part] = frames_by_stem(folder) if os.path.isdir(folder) else {}
        missing = [f for f in frames if f not in tables[part]]
        if missing:
            raise ImageReadError(f"{os.path.join(folder, missing[0])}.*: missing ({len(missing)} of {len(frames)} "
                                 f"frames have no {part}/ file)")
    return [(f, {part: table[f] for part, table in tables.items()}) for f in frames]


def frame_count(clip_dir):
    """Frames of a clip (the files in pha/), for progress bars."""
    return len(list_images(os.path.join(clip_dir, 'pha')))
