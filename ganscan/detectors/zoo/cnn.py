"""The timm and torchvision classifiers of the published recipes, and a tiny CNN for tests."""

from __future__ import annotations

import torch
from torch import nn

from ganscan.detectors.registry import INCEPTION_MEAN, INCEPTION_STD, register_detector


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=1)


def _register_timm(name: str, timm_name: str, input_size: int, classifier: tuple[str, ...], **cfg) -> None:
    register_detector(name, input_size=input_size, classifier=classifier, timm_name=timm_name, **cfg)(
        lambda: _timm(timm_name))


_register_timm("resnet18", "resnet18", 224, ("fc.",), description="ResNet-18 (seed 002)")
_register_timm("resnet50", "resnet50", 224, ("fc.",), description="ResNet-50, as CNNDetection (seed 001)")
_register_timm("densenet121", "densenet121", 224, ("classifier.",), description="DenseNet-121 (seed 000)")
_register_timm("xception", "legacy_xception", 299, ("fc.",), mean=INCEPTION_MEAN, std=INCEPTION_STD,
               description="Xception (seed 000)")
_register_timm("nasnet", "nasnetalarge", 331, ("last_linear.",), mean=INCEPTION_MEAN, std=INCEPTION_STD,
               description="NASNet-A Large (seed 000)")
_register_timm("inception_resnet_v2", "inception_resnet_v2", 299, ("classif.",), mean=INCEPTION_MEAN,
               std=INCEPTION_STD, description="Inception-ResNet-v2 (seed 000)")
_register_timm("efficientnet_b0", "efficientnet_b0", 224, ("classifier.",),
               description="EfficientNet-B0 (seed 002)")
_register_timm("efficientnet_lite0", "efficientnet_lite0", 224, ("classifier.",),
               description="EfficientNet-Lite0 (ImageNet weights from an optional package)")


@register_detector("alexnet", input_size=224, classifier=("classifier.6.",), description="AlexNet (seed 003)")
def _alexnet() -> nn.Module:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=1)


@register_detector("test-cnn", input_size=64, classifier=("fc.",), description="tiny CNN for tests")
class TinyCNN(nn.Module):
    """A few thousand parameters: for tests and for the placeholder detector."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(inplace=True),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(width * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
