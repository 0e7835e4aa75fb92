"""The torch side of the EfficientNet-Lite0 port (``training.convert_efficientnet_lite``):
a reference network in torch with the module layout of the ``.pth`` file
(``lukemelas/EfficientNet-PyTorch`` names), and its outputs.

Written independently of :mod:`training.efficientnet_lite` (and without
Keras) so that comparing the two checks the port. TensorFlow's "SAME"
padding is reproduced with ``F.pad`` (half before, the rest after, per
input size). torch is imported here only; it is not a project requirement.
"""

from __future__ import annotations

import math

import numpy as np

from training.efficientnet_lite import BN_EPSILON, HEAD_CHANNELS, NUM_CLASSES, STEM_CHANNELS, block_specs


def torch_reference():
    """An eval-mode torch EfficientNet-Lite0 with random weights (load a state_dict into it)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    class SameConv(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            s = self.stride[0]
            ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return super().forward(x)

    def bn(c):
        return nn.BatchNorm2d(c, eps=BN_EPSILON, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, s, e):
            super().__init__()
            hidden = cin * e
            self.expand = e != 1
            if self.expand:
                self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
                self._bn0 = bn(hidden)
            self._depthwise_conv = SameConv(hidden, hidden, k, stride=s, groups=hidden, bias=False)
            self._bn1 = bn(hidden)
            self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = s == 1 and cin == cout

        def forward(self, x):
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.skip else y

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, STEM_CHANNELS, 3, stride=2, bias=False)
            self._bn0 = bn(STEM_CHANNELS)
            self._blocks = nn.ModuleList(Block(cin, cout, k, s, e) for _, cin, cout, k, s, e in block_specs())
            self._conv_head = nn.Conv2d(320, HEAD_CHANNELS, 1, bias=False)
            self._bn1 = bn(HEAD_CHANNELS)
            self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

        def features(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

        def forward(self, x):
            return self._fc(self.features(x))

    torch.set_grad_enabled(False)
    return Lite0().eval()


def torch_model_from_state(state: dict[str, np.ndarray]):
    import torch

    model = torch_reference()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return model


def torch_outputs(model, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled features) of the torch network on normalised NHWC float32 input."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2), dtype=np.float32))
    feats = model.features(x)
    return model._fc(feats).numpy(), feats.numpy()
