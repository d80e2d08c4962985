"""Feature extractors written for this project (torchvision layouts, so official weights map 1:1)."""
from .mobilenetv2 import MobileNetV2Encoder
from .resnet import ResNetEncoder

__all__ = ['MobileNetV2Encoder', 'ResNetEncoder']
