"""The paper's networks in PyTorch, written from the paper's description and our docs (see
models/src/ for the Rust side), for the PyTorch twins `bench-pytorch.py` and
`reproduce-pytorch.py`: the same layers, heads and initialisation as our registry models."""

import math
import re

import torch
from torch import nn


class Spherization(nn.Module):
    """n pre-activations -> n+1 coordinates on a sphere of radius r, using only angles:
    phi_i = (pi/2 - phi_L) sigmoid(alpha z_i) + phi_L; s_k = r sin(phi_1)..sin(phi_{k-1}) cos(phi_k),
    s_{n+1} = r sin(phi_1)..sin(phi_n). The running product is a cumulative product (O(n)).
    alpha ("scaling") is learned, r fixed, as in the paper's image benchmarks."""

    def __init__(self, n, scaling=5.0, radius=5.0, delta=1e-6):
        super().__init__()
        self.phi_lower = min(math.asin(delta ** (1.0 / n)), (math.pi / 2) * (1 - 0.01))
        self.scaling = nn.Parameter(torch.tensor(float(scaling)))
        self.register_buffer("radius", torch.tensor(float(radius)))

    def forward(self, z):
        phi = (math.pi / 2 - self.phi_lower) * torch.sigmoid(self.scaling * z) + self.phi_lower
        ones = torch.ones(z.shape[0], 1, dtype=z.dtype)
        prefix = self.radius * torch.cumprod(torch.cat([ones, torch.sin(phi)], dim=1), dim=1)
        return torch.cat([prefix[:, :-1] * torch.cos(phi), prefix[:, -1:]], dim=1)


class AngularLinear(nn.Module):
    """SphereNet's angle-based projection onto the rows of a bias-free weight [m, n]: with the
    cosine c of the angle theta between an input row and a weight row (norms
    sqrt(sum v^2 + 1e-12)), theta = acos(clamp(c, -1 + 1e-6, 1 - 1e-6)) and f one of linear
    1 - 2 theta/pi, cosine c, sigmoid K (1 - e^u) / (1 + e^u) with u = theta/k - pi/(2k), k = 0.3
    (f(0) = 1, f(pi) = -1); direct y = f(theta), indirect ("W-Softmax") y = |x| f(theta).
    PyTorch's default Linear init (uniform in +-1/sqrt(n)), as our `AngularLinear`."""

    def __init__(self, n, m, f, indirect):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(m, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))
        self.f, self.indirect = f, indirect

    def forward(self, x):
        x_norm = torch.sqrt((x * x).sum(1, keepdim=True) + 1e-12)
        w_norm = torch.sqrt((self.weight * self.weight).sum(1) + 1e-12)
        c = (x @ self.weight.t()) / (x_norm * w_norm)
        if self.f == "cosine":
            y = c
        else:
            theta = torch.acos(c.clamp(-1 + 1e-6, 1 - 1e-6))
            if self.f == "linear":
                y = 1 - 2 * theta / math.pi
            else:
                k = 0.3
                big_k = (1 + math.exp(-math.pi / (2 * k))) / (1 - math.exp(-math.pi / (2 * k)))
                e = torch.exp(theta / k - math.pi / (2 * k))
                y = big_k * (1 - e) / (1 + e)
        return x_norm * y if self.indirect else y


# CNN-9's last-layer operators by registry name: cnn9_{f}_s direct, cnn9_w_{f}_s indirect.
ANGLE_FNS = ("linear", "cosine", "sigmoid")


def head(n, classes, spherized, sphere=None):
    """The last layer: ReLU + Linear, or spherization followed by a bias-free Linear(n+1 -> classes)."""
    if spherized:
        return nn.Sequential(Spherization(n, **(sphere or {})), nn.Linear(n + 1, classes, bias=False))
    return nn.Sequential(nn.ReLU(), nn.Linear(n, classes))


def simple_fnn(spherized, classes=10, sphere=None):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 300), head(300, classes, spherized, sphere)
    )


def lenet(spherized, classes=10, sphere=None):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), head(84, classes, spherized, sphere),
    )


def conv_bn_relu(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


# Convolutions per stage of VGG configs A (11), D (16) and E (19).
VGG_STAGES = {11: [1, 1, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}


def vgg_bn(depth, spherized, widths=(64, 128, 256, 512), channels=3, avg_pool=False, classes=10, sphere=None):
    """VGG-depth-BN for 32x32 input: five stages of 3x3 conv + BN + ReLU, each ended by 2x2
    pooling, stage i at width i (stage 5 reuses width 4); classifier w4-4096-4096-classes with
    ReLU and dropout, or w4-4096 (ReLU, dropout) -4096 -> spherize -> bias-free. Convolutions
    get torchvision's VGG init (kaiming normal, fan out, zero bias), the classifier PyTorch's
    default."""
    layers, c_in = [], channels
    for stage, convs in enumerate(VGG_STAGES[depth]):
        for _ in range(convs):
            layers += conv_bn_relu(c_in, widths[min(stage, 3)])
            c_in = widths[min(stage, 3)]
        layers.append(nn.AvgPool2d(2) if avg_pool else nn.MaxPool2d(2))
    for m in layers:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    classifier = [nn.Linear(c_in, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096)]
    if spherized:
        classifier.append(head(4096, classes, True, sphere))
    else:
        classifier += [nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes)]
    return nn.Sequential(*layers, nn.Flatten(), *classifier)


def cnn9(spherized, multiplier=1.0, classes=10, sphere=None, angle=None):
    """CNN-9: three stages of three 3x3 conv + BN + ReLU (128, 192, 256, times the multiplier),
    each ended by 2x2 max-pooling, then Linear(4096 -> 256) and a last layer that is ordinary,
    spherized, or (angle = (f, indirect)) an angle-based projection. PyTorch's default init."""
    scaled = lambda w: max(1, round(w * multiplier))
    layers, c_in = [], 3
    for width in [scaled(w) for w in (128, 192, 256)]:
        for _ in range(3):
            layers += conv_bn_relu(c_in, width)
            c_in = width
        layers.append(nn.MaxPool2d(2))
    hidden = scaled(256)
    if angle is not None:
        last = AngularLinear(hidden, classes, *angle)
    elif spherized:
        last = head(hidden, classes, True, sphere)
    else:
        last = nn.Linear(hidden, classes)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 16, hidden), last)


def vis_cnn(k, spherized, classes=10, sphere=None, feature_relu=True):
    """The visualization CNN of Figure 5: conv 32, 32 | pool | 64, 64 | pool | 128, 128 (3x3,
    BN, ReLU) on 28x28 MNIST, then 6272-256 (ReLU) -k and, plain, ReLU + Linear(k, classes);
    spherized, k -> spherize (k+1) -> bias-free Linear. PyTorch's default init throughout."""
    layers, c_in = [], 1
    for stage, width in enumerate((32, 64, 128)):
        if stage > 0:
            layers.append(nn.MaxPool2d(2))
        for _ in range(2):
            layers += conv_bn_relu(c_in, width)
            c_in = width
    last = head(k, classes, spherized, sphere)
    if not spherized and not feature_relu:
        last = last[1]  # the k features stay linear: no ReLU before the classifier
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 49, 256), nn.ReLU(), nn.Linear(256, k), last)


def build(name, classes=10, widths=None, width_multiplier=1.0, sphere=None):
    """A registry model by name (the subset the twins know), with `sph train`'s shaping flags."""
    spherized = name.startswith("sph_")
    family = name[4:] if spherized else name
    if widths is None:
        widths = [max(1, round(w * width_multiplier)) for w in (64, 128, 256, 512)]
    kw = {"classes": classes, "sphere": sphere}
    if family in ("simple_fnn", "fnn"):
        return simple_fnn(spherized, **kw)
    if family == "lenet":
        return lenet(spherized, **kw)
    if family in ("vgg11_bn", "vgg16_bn", "vgg19_bn"):
        return vgg_bn(int(family[3:5]), spherized, widths, **kw)
    if family in ("vgg11_bn_one",):
        return vgg_bn(11, spherized, widths, channels=1, avg_pool=True, **kw)
    if family in ("simple_cnn_2d", "simple_cnn_3d"):
        return vis_cnn(int(family[-2]), False, **kw)
    if family == "cnn_3d":  # sph_cnn_3d: a 2-D feature layer spherized onto the 3-D sphere
        return vis_cnn(2, True, **kw)
    if family in ("cnn9", "cnn9_s"):
        return cnn9(spherized, width_multiplier, **kw)
    projection = re.fullmatch(r"cnn9_(w_)?(\w+)_s", family)
    if projection and projection[2] in ANGLE_FNS:
        return cnn9(False, width_multiplier, angle=(projection[2], projection[1] is not None), **kw)
    raise ValueError(f"the PyTorch twins do not know model '{name}'")
