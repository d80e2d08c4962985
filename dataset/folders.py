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

from utils.io import IMAGE_EXTENSIONS, read_alpha, read_image, read_rgba
from utils.pairing import by_stem, list_images, listing_rows, pair_up

FGR_NAMES = ('fgr', 'fg', 'foreground', 'original')
PHA_NAMES = ('pha', 'alpha', 'gt', 'mask', 'matte')
TRIMAP_NAMES = ('trimap', 'trimaps')
# the photo a trimap-based model sees: Composition-1k merged/, AIM-500 original/ (natural photos, no fg colours)
IMAGE_NAMES = ('merged', 'image', 'images', 'com', 'composite', 'input', 'original')


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
    tables = {os.path.basename(d) + '/': by_stem(d) for d in (fgr_dir, pha_dir, tri_dir) if d}
    labels = list(tables)
    pairs = pair_up(tables, exact=labels[:2], where=root)
    if not pairs:
        raise ValueError(f"{root}: {labels[0]} and {labels[1]} hold no images")
    return [(paths[labels[0]], paths[labels[1]], paths.get(labels[2]) if tri_dir else None) for _, paths in pairs]


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


def pair_stem(root, fgr_path):
    """A pair's name: its foreground's path relative to `root` without extension and without the foreground
    folder (fgr/0001.png -> 0001, Adobe/fg/x.jpg -> Adobe/x)."""
    parts = os.path.splitext(os.path.relpath(fgr_path, root))[0].split(os.sep)
    fgr_dir = next((i for i, part in enumerate(parts[:-1]) if part.lower() in FGR_NAMES), None)
    return '/'.join(parts[:fgr_dir] + parts[fgr_dir + 1:] if fgr_dir is not None else parts)


def read_pair(fgr_path, pha_path):
    """(fgr H x W x 3, pha H x W) float32; pha_path == fgr_path means an RGBA file (PhotoMatte85)."""
    if pha_path == fgr_path:
        return read_rgba(fgr_path)
    fgr, pha = read_image(fgr_path), read_alpha(pha_path)
    if pha.shape != fgr.shape[:2]:
        raise ValueError(f"{fgr_path} is {fgr.shape[1]}x{fgr.shape[0]} but its alpha {pha_path} is "
                         f"{pha.shape[1]}x{pha.shape[0]}")
    return fgr, pha


def trimap_triples(root):
    """[(name, image, alpha, trimap)] of a trimap test set: a data.txt of `image|alpha|trimap` rows (the MindSpore
    IndexNet port's validation layout; paths relative to `root` unless absolute), or every folder below `root`
    with an image child (merged/, original/, ...), an alpha child and a trimap child, paired by name."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: folder not found")
    listing = os.path.join(root, 'data.txt')
    if os.path.isfile(listing):
        return [(os.path.splitext(os.path.relpath(row[0], root))[0], *row)
                for row in listing_rows(listing, root, ('image', 'alpha', 'trimap'), extra=True)]
    triples = []
    for directory, subdirs, _ in os.walk(root):
        subdirs.sort()
        children = [_child(directory, names) for names in (IMAGE_NAMES, PHA_NAMES, TRIMAP_NAMES)]
        if all(children):
            tables = {os.path.basename(d) + '/': by_stem(d) for d in children}
            prefix = os.path.relpath(directory, root)
            triples += [(key if prefix == '.' else f'{prefix}/{key}', *paths.values())
                        for key, paths in pair_up(tables, exact=list(tables), where=directory)]
            subdirs.clear()
    if not triples:
        raise ValueError(f"{root}: no trimap test set (a data.txt of image|alpha|trimap rows, or folders with "
                         f"{'/'.join(IMAGE_NAMES[:2])}/..., an alpha folder and a trimap folder)")
    return triples
