"""Finding and pairing the files of matting datasets in their released layouts.

A *matting folder* is a directory with a foreground child and an alpha child, optionally a trimap child:
`fgr/ pha/` (BGMv2, VideoMatte240K, PhotoMatte13K), `fg/ alpha/ trimaps/` (Adobe Composition-1k),
`FG/ GT/` (Distinctions-646), `original/ mask/ trimap/` (AIM-500). Files are paired by their path relative
to those children without the extension (VideoMatte240K: `<clip>/<frame>`), so a `.jpg` foreground pairs
with a `.png` matte. The official code only asserted equal counts and zipped the sorted lists; pairing by
name catches a missing or extra file instead of silently shifting every later pair.
A folder of RGBA images with no such children (PhotoMatte85) pairs each file with its own alpha channel.
"""
import os

from utils.io import IMAGE_EXTENSIONS, list_images

FGR_NAMES = ('fgr', 'fg', 'foreground', 'original')
PHA_NAMES = ('pha', 'alpha', 'gt', 'mask', 'matte')
TRIMAP_NAMES = ('trimap', 'trimaps')


def image_files(root):
    """Sorted image files under `root` (recursive): a background folder. Clear errors if missing or empty."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: background folder not found")
    files = list_images(root)
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return files


def _child(root, names):
    """The child directory of `root` whose lower-cased name is one of `names` (at most one may exist)."""
    found = [d for d in sorted(os.listdir(root)) if d.lower() in names and os.path.isdir(os.path.join(root, d))]
    if len(found) > 1:
        raise ValueError(f"{root}: ambiguous folders {found}; keep only one of them")
    return os.path.join(root, found[0]) if found else None


def _by_stem(directory):
    """{relative path without extension: path}; two files with the same stem are an error."""
    table = {}
    for path in list_images(directory):
        stem = os.path.splitext(os.path.relpath(path, directory))[0]
        if stem in table:
            raise ValueError(f"{directory}: {os.path.basename(table[stem])} and {os.path.basename(path)} "
                             f"have the same name; cannot tell which one pairs")
        table[stem] = path
    return table


def _unpaired_message(root, missing):
    lines = [f"  {where}: {', '.join(names[:10])}" + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
             for where, names in missing if names]
    return f"{root}: files that do not pair up by name:\n" + "\n".join(lines)


def is_matting_folder(root):
    return os.path.isdir(root) and _child(root, FGR_NAMES) is not None and _child(root, PHA_NAMES) is not None


def matting_pairs(root):
    """Sorted [(fgr_path, pha_path, trimap_path or None)] of a folder with fgr/ pha/ [trimap/] children.

    Raises ValueError naming the folder and listing every file without a partner.
    """
    if not os.path.isdir(root):
        raise ValueError(f"{root}: matting folder not found")
    fgr_dir, pha_dir, tri_dir = (_child(root, names) for names in (FGR_NAMES, PHA_NAMES, TRIMAP_NAMES))
    if fgr_dir is None or pha_dir is None:
        raise ValueError(f"{root}: expected a foreground folder ({'/'.join(FGR_NAMES)}) and an alpha folder "
                         f"({'/'.join(PHA_NAMES)}), found {sorted(os.listdir(root))}")
    fgr, pha = _by_stem(fgr_dir), _by_stem(pha_dir)
    tri = _by_stem(tri_dir) if tri_dir else {}
    missing = [(f"in {os.path.basename(fgr_dir)}/ without alpha", sorted(fgr.keys() - pha.keys())),
               (f"in {os.path.basename(pha_dir)}/ without foreground", sorted(pha.keys() - fgr.keys()))]
    if tri_dir:
        missing.append((f"without trimap in {os.path.basename(tri_dir)}/",
                        sorted(fgr.keys() & pha.keys() - tri.keys())))
    if any(names for _, names in missing):
        raise ValueError(_unpaired_message(root, missing))
    if not fgr:
        raise ValueError(f"{root}: {os.path.basename(fgr_dir)}/ and {os.path.basename(pha_dir)}/ hold no images")
    return [(fgr[k], pha[k], tri.get(k)) for k in sorted(fgr)]


def find_pairs(root):
    """All (fgr, pha, trimap) pairs under a dataset split folder.

    Every matting folder below `root` counts (Adobe keeps 'Adobe-licensed images/' and 'Other/' side by
    side); a split that is a plain folder of images is read as RGBA (PhotoMatte85): such a pair has
    pha_path == fgr_path and its matte is the alpha channel.
    """
    if not os.path.isdir(root):
        raise ValueError(f"{root}: folder not found")
    folders = []
    for directory, subdirs, _ in os.walk(root):
        subdirs.sort()
        if is_matting_folder(directory):
            folders.append(directory)
            subdirs.clear()          # its children are the fgr/pha folders themselves
    if folders:
        return [pair for folder in folders for pair in matting_pairs(folder)]
    files = list_images(root)
    if not files:
        raise ValueError(f"{root}: no matting folder (fgr/ + pha/, fg/ + alpha/, FG/ + GT/, original/ + mask/) "
                         f"and no RGBA images found")
    return [(path, path, None) for path in files]
