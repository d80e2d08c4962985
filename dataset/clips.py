"""The composited video test layout of Robust Video Matting's evaluation (spec/rvm.md 4.1):
`<root>/[<dataset>/]<clip>/{com,fgr,pha,bgr}/<frame>.png` - composite, true foreground, true alpha and the
background of every frame (the published sets: videomatte_512x288/ and videomatte_1920x1080/, each with
videomatte_static/ and videomatte_motion/ clips). A prediction folder mirrors it with `<clip>/{pha,fgr}/`.

A clip is any folder with a `pha/` child, found at any depth and named by its path relative to the root
('videomatte_static/0003'); its frames are the files of `pha/` in name order, and the other parts pair
with them by file name without the extension (a .jpg composite pairs with a .png matte).
"""
import os

from utils.pairing import by_stem, list_images, pair_up

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


def clip_frames(clip_dir, parts, optional=(), frames=None):
    """[(frame, {part: path})] in frame order, for `frames` (default: the files of clip_dir/pha/). Every part
    in `parts` must have every frame (an UnpairedError names the folder and the missing frames); a part in
    `optional` whose folder is absent is left out, but a present one must be complete too."""
    if frames is None:
        frames = sorted(by_stem(os.path.join(clip_dir, 'pha')))
        if not frames:
            raise ValueError(f"{os.path.join(clip_dir, 'pha')}: no frames")
    folders = [(part, os.path.join(clip_dir, part)) for part in tuple(parts) + tuple(optional)]
    tables = {part: by_stem(folder) if os.path.isdir(folder) else {} for part, folder in folders
              if part not in optional or os.path.isdir(folder)}
    return pair_up(tables, keys=frames, where=clip_dir)


def frame_count(clip_dir):
    """Frames of a clip (the files in pha/), for progress bars."""
    return len(list_images(os.path.join(clip_dir, 'pha')))
