"""Choosing the device Paddle runs on."""
import paddle


def set_device(name):
    """'cpu' or 'gpu'; a clear error for gpu on a CPU build of Paddle."""
    if name == 'gpu' and not paddle.device.is_compiled_with_cuda():
        raise ValueError("--device gpu needs paddlepaddle-gpu (this Paddle is a CPU build); use --device cpu")
    paddle.set_device(name)
