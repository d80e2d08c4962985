"""Image and video files in and out: the one place that reads and writes them.

Reading accepts JPG/PNG/BMP/TIFF/WebP, 8 or 16 bit, grayscale, RGB or RGBA, and applies the EXIF
orientation of photos. Everything is returned as float32 in [0, 1]. Writing is atomic: a file
either appears complete or not at all, so an interrupted run never leaves a truncated output.
Errors are ValueErrors whose message names the file (ImageReadError for inputs, OutputError for outputs).
"""
import contextlib
import os
import tempfile

import cv2
import numpy as np

UMASK = os.umask(0o022)
os.umask(UMASK)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(ValueError):
    """A file that is missing or cannot be decoded as an image; the message names the file."""


class OutputError(ValueError):
    """An output that cannot be written (its folder is a file, no permission, disk full); names the path."""


def make_dirs(directory):
    """os.makedirs with an OutputError naming the folder (e.g. a file of that name is in the way)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{directory}: cannot create this folder, a file is in the way") from None
    except OSError as e:
        raise OutputError(f"{directory}: cannot create this folder ({e.strerror or e})") from None


def _decode(path, flags):
    try:
        data = np.fromfile(path, dtype=np.uint8)   # also handles non-ASCII paths
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read file ({e.strerror or e})") from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (empty, truncated or unknown format)")
    return image


def _to_float(image, path):
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535)
    if image.dtype.kind == 'f':              # float TIFF/EXR: values taken as [0, 1]
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0, 1)
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}")


def _rgb(image):
    """Decoded H x W [x C] (OpenCV's BGR order) -> H x W x 3 RGB; gray is repeated, alpha dropped."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] < 3:                   # gray, gray + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, 2::-1])


def read_image(path):
    """H x W x 3 float32 RGB in [0, 1]. Grayscale is repeated to RGB; an alpha channel is dropped."""
    return _rgb(_to_float(_decode(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR), path))   # applies EXIF


def read_alpha(path):
    """H x W float32 matte in [0, 1] from a matte file. Of a colour file the first (red) channel is used,
    as in the reference MATLAB evaluation; of an RGBA file whose colour is empty, the alpha channel."""
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        if image.shape[2] == 4 and not image[:, :, :3].any():
            image = image[:, :, 3]
        elif image.shape[2] == 2:                  # gray + alpha
            image = image[:, :, 0]
        else:
            image = image[:, :, 2]                 # BGR(A) -> R
    return _to_float(np.ascontiguousarray(image), path)


def read_rgba(path):
    """(H x W x 3 RGB, H x W alpha) float32 of an image with an alpha channel (PhotoMatte85's RGBA files)."""
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.ndim != 3 or image.shape[2] != 4:
        raise ImageReadError(f"{path}: no alpha channel (a folder without fgr/ and pha/ must hold RGBA images)")
    image = _to_float(image, path)
    return _rgb(image), np.ascontiguousarray(image[:, :, 3])


def read_alpha_u8(path):
    """H x W uint8 matte exactly as stored in an 8-bit file (16-bit files are rounded to 8 bits)."""
    return to_uint8(read_alpha(path))


def read_trimap(path, shape=None):
    """H x W uint8 trimap with only 0 (background), 128 (unknown) and 255 (foreground); `shape` (h, w) that it
    must have (its image's)."""
    trimap = read_alpha_u8(path)
    if shape is not None and trimap.shape != tuple(shape):
        raise ImageReadError(f"{path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but its image is "
                             f"{shape[1]}x{shape[0]}")
    other = ~np.isin(trimap, (0, 128, 255))
    if other.any():
        values = np.unique(trimap[other])
        raise ImageReadError(f"{path}: a trimap holds only 0, 128 and 255; {int(other.sum())} pixels hold other "
                             f"values ({', '.join(map(str, values[:5]))}{' ...' if len(values) > 5 else ''}; a "
                             f"JPEG or a resized trimap?)")
    return trimap


def to_uint8(image):
    """float [0, 1] -> uint8, rounded half to even and saturated; uint8 passes through. OpenCV does it in one pass
    (16 times faster than numpy on an HD frame) for images of up to 4 channels: 255 x + 0 x, saturated."""
    if image.dtype == np.uint8:
        return image
    image = np.asarray(image, np.float32)
    if opencv_image(image):
        return cv2.addWeighted(image, 255, image, 0, 0, dtype=cv2.CV_8U)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def opencv_image(a):
    """Whether OpenCV's element-wise functions take `a` as an image: H x W (x C <= 4) with H, W >= 2 (it reads
    tiny arrays such as 1 x 1 x 3 as scalars)."""
    return a.ndim in (2, 3) and min(a.shape[:2]) >= 2 and (a.ndim == 2 or a.shape[2] <= 4)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is renamed to `path`, else removed."""
    directory = os.path.dirname(os.path.abspath(path))
    make_dirs(directory)
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a folder, cannot write a file there")
    try:
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix=os.path.splitext(path)[1], dir=directory)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)      # mkstemp makes files private; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_image(path, image, quality=95):
    """Write H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA) atomically.

    float input in [0, 1] or uint8; the format follows the extension (JPG, PNG, ...).
    """
    image = to_uint8(np.asarray(image))
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ext = os.path.splitext(path)[1].lower() or '.png'
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in ('.jpg', '.jpeg') else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"{path}: cannot encode an image of shape {image.shape} as {ext}")
    with atomic_path(path) as tmp:
        data.tofile(tmp)


def pascal_palette(n=256):
    """The PASCAL VOC colour map that DAVIS and YouTube-VOS label PNGs carry: (n, 3) uint8, index 0 black,
    1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), 4 (0, 0, 128), ...: bit 3j + c of the index (c = 0 red,
    1 green, 2 blue) is bit 7 - j of that channel."""
    index = np.arange(n)
    palette = np.zeros((n, 3), np.int64)
    for j in range(8):
        for c in range(3):
            palette[:, c] |= ((index >> (3 * j + c)) & 1) << (7 - j)
    return palette.astype(np.uint8)


DAVIS_PALETTE = pascal_palette()


def read_labels(path, palette=DAVIS_PALETTE):
    """H x W uint8 label indices of a label PNG (DAVIS/YouTube-VOS annotations and results, 0 = background).

    An indexed (palette) file gives its indices whatever colours its palette holds; a grayscale file its gray
    values (a DAVIS 2016 0/255 mask stays 0/255: callers that want binary masks test > 0); a 1-bit file 0/1;
    16-bit gray its values if all are <= 255. An RGB(A) file (alpha ignored) is mapped through `palette` (n x 3,
    default DAVIS_PALETTE) when every colour is one of it (each gives its index there); else, if every pixel is
    gray (R = G = B), it reads as grayscale (a 0/255 mask saved as RGB); any other colour is an ImageReadError
    naming the file. (So an RGB 0/128 mask gives 0/7: palette gray 7 is (128, 128, 128).)"""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.load()
    except OSError as e:                     # missing, unreadable or not an image
        raise ImageReadError(f"{path}: not a readable label image ({getattr(e, 'strerror', None) or e})") from None
    mode = image.mode
    if mode in ('RGBA', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV'):
        image = image.convert('RGB')
    elif mode == 'LA':
        image = image.getchannel('L')
    elif mode == 'PA':
        image = image.getchannel('P')
    labels = np.asarray(image)
    if labels.ndim == 3:
        mapped = _colours_to_labels(labels, palette)
        if mapped is not None:
            return mapped
        if not (labels == labels[..., :1]).all():
            c = labels[(labels != labels[..., :1]).any(axis=2)][0]
            raise ImageReadError(f"{path}: colour RGB ({c[0]}, {c[1]}, {c[2]}) is not in the label palette; save "
                                 f"labels as an indexed PNG")
        labels = labels[..., 0]
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype != np.uint8:
        if labels.min() < 0 or labels.max() > 255:
            raise ImageReadError(f"{path}: label values {labels.min()}..{labels.max()} do not fit 0..255")
        labels = labels.astype(np.uint8)
    return np.ascontiguousarray(labels)


def _colour_code(c):
    """... x 3 uint8 colours -> one int64 each (r << 16 | g << 8 | b)."""
    c = c.astype(np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _colours_to_labels(rgb, palette):
    """H x W x 3 uint8 colours -> their indices in `palette` (the first index of a repeated colour), None if a
    colour is not in it."""
    colours, inverse = np.unique(_colour_code(rgb).ravel(), return_inverse=True)
    table = {}
    for i, c in enumerate(_colour_code(np.asarray(palette, np.uint8).reshape(-1, 3)).tolist()):
        table.setdefault(c, i)
    if any(c not in table for c in colours.tolist()):
        return None
    return np.array([table[c] for c in colours.tolist()], np.uint8)[inverse].reshape(rgb.shape[:2])


def write_labels(path, labels, palette=DAVIS_PALETTE):
    """Write H x W integer labels 0..255 atomically as an indexed PNG with `palette` (n x 3 uint8 or a flat
    RGB list, default DAVIS_PALETTE): the format of DAVIS annotations and of results the DAVIS toolkit reads."""
    from PIL import Image
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"{path}: labels must be an H x W array, got shape {labels.shape}")
    if labels.dtype.kind not in 'biu' or (labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"{path}: labels must be integers 0..255, got dtype {labels.dtype} "
                         f"(range {labels.min()}..{labels.max()})")
    image = Image.fromarray(np.ascontiguousarray(labels, np.uint8))
    image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())      # L + palette = P, indices kept
    with atomic_path(path) as tmp:
        image.save(tmp, format='PNG')


def resize_cover(image, h, w):
    """Resize to cover h x w and centre-crop (keeps the aspect ratio)."""
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    s = max(h / ih, w / iw)
    image = cv2.resize(image, (max(w, round(iw * s)), max(h, round(ih * s))), interpolation=cv2.INTER_AREA)
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y:y + h, x:x + w]


VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')


def is_video(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


class VideoReader:
    """Frames of a video file as H x W x 3 float32 RGB in [0, 1]."""

    def __init__(self, path):
        self.path = path
        self.capture = cv2.VideoCapture(path)
        if not os.path.isfile(path) or not self.capture.isOpened():
            raise ImageReadError(f"{path}: cannot open as a video")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def __len__(self):
        return self.frame_count

    def __iter__(self):
        self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        while True:
            ok, frame = self.capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255)

    def close(self):
        self.capture.release()


def yuv420(frame):
    """H x W x 3 RGB or H x W gray uint8 -> the planar yuv420p image H.264 takes (3H/2 x W): BT.601 limited range,
    the conversion FFmpeg's swscale makes (luma within 1), with each chroma sample the mean of its 2 x 2 pixels
    (OpenCV's own I420 conversion takes one pixel of the four: aliasing on fine detail), from OpenCV's full-range
    YCrCb of the half-size frame scaled to 16-240. 1.7 ms for an HD frame; swscale, which PyAV calls for an RGB
    frame, took 4.3 ms. Gray is luma only: Y = 16 + 219 g / 255, chroma 128."""
    h, w = frame.shape[:2]
    if frame.ndim == 2:
        planes = np.full((h * 3 // 2, w), 128, np.uint8)
        planes[:h] = cv2.convertScaleAbs(frame, alpha=219 / 255, beta=16)
        return planes
    planes = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)                 # its luma; its chroma is replaced
    _, cr, cb = cv2.split(cv2.cvtColor(cv2.resize(frame, (w // 2, h // 2)), cv2.COLOR_RGB2YCrCb))  # 2x2 means
    for row, c in ((h, cb), (h + h // 4, cr)):                           # the U plane, then the V plane
        planes[row:row + h // 4] = cv2.convertScaleAbs(c, alpha=224 / 255, beta=128 * 31 / 255).reshape(h // 4, w)
    return planes


class VideoWriter:
    """MP4 writer: H.264 through PyAV when it is installed, else OpenCV's mp4v.

    Frames go to a temporary file that replaces `path` only on a clean `close()`, so an
    interrupted run leaves no half-written video.
    """

    def __init__(self, path, fps, width, height, preset='ultrafast'):
        self.path, self.width, self.height = path, width, height
        directory = os.path.dirname(os.path.abspath(path))
        make_dirs(directory)
        fd, self.tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.mp4', dir=directory)
        os.close(fd)
        self.container = None
        try:
            import av
        except ImportError:
            av = None
        if av is not None and width % 2 == 0 and height % 2 == 0:   # yuv420p needs even sizes
            from fractions import Fraction
            self.container = av.open(self.tmp, mode='w')
            self.stream = self.container.add_stream('libx264', rate=Fraction(fps).limit_denominator(1001))
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, 'yuv420p'
            self.stream.options = {'crf': '18', 'preset': preset}
        else:
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
            if not self.writer.isOpened():
                os.remove(self.tmp)
                raise ValueError(f"{path}: OpenCV cannot write mp4v video here")

    def write(self, frame):
        """frame: H x W x 3 RGB (or H x W gray), float [0, 1] or uint8."""
        frame = np.ascontiguousarray(to_uint8(np.asarray(frame)))
        if self.container is not None:
            import av
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(yuv420(frame), 'yuv420p')):
                self.container.mux(packet)
        else:
            self.writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR))

    def close(self):
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        else:
            self.writer.release()
        os.chmod(self.tmp, 0o666 & ~UMASK)
        os.replace(self.tmp, self.path)

    def abort(self):
        if self.container is not None:
            self.container.close()
        else:
            self.writer.release()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)
