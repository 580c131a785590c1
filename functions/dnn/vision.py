"""Vision models in plain torch: ResNet-18/50, MobileNetV2 with an SSD-style
head, and ESPCN super-resolution. Architectures follow the papers; widths
are the standard ones."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


# --- ResNet (He et al. 2016) ---------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18(num_classes=1000):
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes=1000):
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


# --- MobileNetV2 (Sandler et al. 2018) + an SSD-style head (Liu et al. 2016) -------
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2's feature extractor; returns the stride-16 and stride-32 maps."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        cin = 32
        self.split = 0
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
            if c == 96:
                self.split = len(layers)
        layers.append(nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        x = self.layers[: self.split](x)
        return x, self.layers[self.split:](x)


class SSDLite(nn.Module):
    """SSD-style head on two MobileNetV2 feature maps: per anchor, class
    scores (background + classes) and box offsets from the anchor."""

    def __init__(self, num_classes=2, anchors=((0.15, 0.3), (0.4, 0.7))):
        super().__init__()
        self.features = MobileNetV2Features()
        self.anchor_sizes = anchors
        k = len(anchors[0])
        self.cls = nn.ModuleList([nn.Conv2d(96, k * (num_classes + 1), 3, 1, 1),
                                  nn.Conv2d(1280, k * (num_classes + 1), 3, 1, 1)])
        self.box = nn.ModuleList([nn.Conv2d(96, k * 4, 3, 1, 1), nn.Conv2d(1280, k * 4, 3, 1, 1)])
        self.num_classes = num_classes

    def anchors(self, sizes_hw):
        boxes = []
        for (h, w), scales in zip(sizes_hw, self.anchor_sizes):
            ys, xs = torch.meshgrid((torch.arange(h, device=self.cls[0].weight.device) + 0.5) / h,
                                    (torch.arange(w, device=self.cls[0].weight.device) + 0.5) / w, indexing="ij")
            centres = torch.stack([xs, ys], -1).reshape(-1, 1, 2)
            for_scale = [torch.cat([centres, torch.full_like(centres, s)], -1) for s in scales]
            boxes.append(torch.cat(for_scale, 1).reshape(-1, 4))
        return torch.cat(boxes, 0)  # cx, cy, w, h in [0, 1]

    def forward(self, x):
        maps = self.features(x)
        n = x.shape[0]
        scores = torch.cat([c(m).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1)
                            for c, m in zip(self.cls, maps)], 1)
        offsets = torch.cat([b(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for b, m in zip(self.box, maps)], 1)
        anchors = self.anchors([m.shape[-2:] for m in maps])
        centre = anchors[:, :2] + 0.1 * offsets[..., :2] * anchors[:, 2:]
        size = anchors[:, 2:] * torch.exp(0.2 * offsets[..., 2:].clamp(-4, 4))
        boxes = torch.cat([centre - size / 2, centre + size / 2], -1).clamp(0, 1)
        return scores.softmax(-1), boxes


# --- ESPCN (Shi et al. 2016) ----------------------------------------------------------
class ESPCN(nn.Module):
    def __init__(self, scale=2, channels=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 64, 5, 1, 2), nn.Tanh(), nn.Conv2d(64, 32, 3, 1, 1), nn.Tanh(),
                                  nn.Conv2d(32, channels * scale * scale, 3, 1, 1))
        self.scale = scale

    def forward(self, x):
        return F.pixel_shuffle(self.body(x), self.scale).clamp(0, 1)
