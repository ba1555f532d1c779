"""ResNet-9 written by hand in plain PyTorch, as ladder.md describes it, to check
what netgraph compiles from recipes/resnet9.yaml against."""
import torch
from torch import nn


def conv_bn(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.res1, self.res2 = conv_bn(c, c), conv_bn(c, c)

    def forward(self, x):
        return x + self.res2(self.res1(x))


class ResNet9(nn.Module):
    def __init__(self, num_classes=10, scale=0.125):
        super().__init__()
        self.prep = conv_bn(3, 64)
        self.layer1 = nn.Sequential(conv_bn(64, 128), nn.MaxPool2d(2), Residual(128))
        self.layer2 = nn.Sequential(conv_bn(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(conv_bn(256, 512), nn.MaxPool2d(2), Residual(512))
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.scale = scale

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.scale


def count_macs(model: nn.Module, image_shape=(3, 32, 32)) -> int:
    """Multiply-accumulates for one image, counted with forward hooks by the rule
    netgraph documents: conv and linear exactly, batch norm and the final scale
    one per element."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, nn.BatchNorm2d):
            total += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *image_shape))
    for h in handles:
        h.remove()
    return total + out.numel()  # the output scale: one multiply per logit
