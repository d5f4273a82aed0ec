"""Published detectors, built as their reference code builds them, so that their released weights load by
name (``ganscan models import FILE --from NAME``; CNNDetection's ResNet-50 is ``resnet50`` in ``cnn``).

- ``npr-tan2024``: NPR (Tan et al., CVPR 2024): a ResNet-50 with a 3x3 stride-2 stem, cut after its second
  stage, ``fc1`` 512 -> 1, fed the NPR residual x - up(down(x)) times 2/3; the whole image.
- ``ufd``: UniversalFakeDetect (Ojha et al., CVPR 2023): the frozen CLIP ViT-L/14 image encoder (timm's
  QuickGELU CLIP tower), its projection, and a linear head; CLIP normalisation, centre crop 224.
- ``dmid``: Corvi et al. (ICASSP 2023) ``res50stride1``: ResNet-50 with stride 1 in its first convolution
  and max-pool; the logit is the mean of the per-position logits over the output map (the fc is linear, so
  it equals the fc of the mean feature); the whole image.
"""

from __future__ import annotations

import torch
from torch import nn

from ganscan.detectors.registry import register_detector
from ganscan.detectors.zoo.families import npr_residual

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _stage(cin: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    from torchvision.models.resnet import Bottleneck

    down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    rest = [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
    return nn.Sequential(Bottleneck(cin, planes, stride, down), *rest)


@register_detector("npr-tan2024", input_size=224, policy="full", classifier=("fc1.",), family="published",
                   description="NPR, Tan et al. CVPR 2024 (chuangchuangtan/NPR-DeepfakeDetection), "
                               "--from npr")
class NPRTan2024(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _stage(64, 64, 3, 1)
        self.layer2 = _stage(256, 128, 4, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(npr_residual(x) * (2.0 / 3.0)))))
        return self.fc1(torch.flatten(self.avgpool(self.layer2(self.layer1(x))), 1))


@register_detector("ufd", input_size=224, mean=CLIP_MEAN, std=CLIP_STD, classifier=("fc.",),
                   family="published", description="UniversalFakeDetect, Ojha et al. CVPR 2023 "
                                                   "(Yuheng-Li/UniversalFakeDetect), --from ufd --clip")
class CLIPLinearProbe(nn.Module):
    """A CLIP ViT image tower (``visual``: timm's QuickGELU CLIP ViT, pooled class token), CLIP's projection
    ``proj`` (width x out) and a linear head ``fc``; ViT-L/14 sizes by default, heads = width / 64 as CLIP."""

    def __init__(self, width=1024, layers=24, patch=14, image=224, out=768):
        super().__init__()
        import timm

        self.visual = timm.create_model("vit_large_patch14_clip_quickgelu_224", pretrained=False,
                                        num_classes=0, embed_dim=width, depth=layers,
                                        num_heads=max(1, width // 64), patch_size=patch, img_size=image)
        self.proj = nn.Parameter(torch.zeros(width, out))
        self.fc = nn.Linear(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.visual(x) @ self.proj)


@register_detector("dmid", input_size=224, policy="full", classifier=("fc.",), family="published",
                   description="res50stride1, Corvi et al. ICASSP 2023 (grip-unina/DMimageDetection), "
                               "--from dmid")
def _dmid() -> nn.Module:
    import timm

    model = timm.create_model("resnet50", pretrained=False, num_classes=1)
    model.conv1.stride = (1, 1)
    model.maxpool.stride = 1
    return model
