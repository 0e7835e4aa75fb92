"""torchvision's ImageNet MobileNetV2 on the torch side, the reference the
Keras port (``training.backbone``) is converted from and checked against.

- :func:`read_pth`: the ``.pth`` state_dict as NumPy arrays;
- :func:`torch_reference`: the network in eval mode with the ``.pth`` loaded
  strictly: ``torchvision.models.mobilenet_v2`` when torchvision imports,
  else :func:`_builtin_torch_mobilenet_v2`, a module-for-module copy of
  torchvision's definition (same submodule names), written independently of
  the Keras port;
- :func:`torch_outputs`: its logits and pooled features on NHWC input;
- :func:`dump_torchvision_classes`: torchvision's ImageNet class names, read
  from the installed wheel without importing it.

torch is imported inside the functions, so this module (and
``training.convert_backbone``, which imports it) loads without torch; no
Keras here at all. Used by the ``python -m training.convert_backbone`` CLI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def read_pth(path) -> dict[str, np.ndarray]:
    """The .pth state_dict as float32/int64 numpy arrays (needs torch)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, expected a state_dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def _builtin_torch_mobilenet_v2():
    """torchvision 0.2x ``mobilenet_v2()`` (width 1.0) re-declared with the same module tree.

    Written independently of :mod:`training.backbone` (and without Keras) so
    that it is a second reading of torchvision's definition, not of the port.
    """
    from torch import nn

    # t (expansion), c (channels), n (repeats), s (first stride), as in torchvision
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2]]
    setting += [[6, 320, 1, 1]]

    def conv_bn_act(cin, cout, kernel=3, stride=1, groups=1):
        # torchvision Conv2dNormActivation: padding=(kernel-1)//2, bias off, BN eps 1e-5, ReLU6
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = int(round(inp * expand_ratio))
            self.use_res_connect = stride == 1 and inp == oup
            layers = []
            if expand_ratio != 1:
                layers.append(conv_bn_act(inp, hidden, kernel=1))
            layers += [
                conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            inp = 32
            features = [conv_bn_act(3, inp, stride=2)]
            for t, c, n, s in setting:
                for i in range(n):
                    features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            features.append(conv_bn_act(inp, 1280, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(1280, 1000))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1)).flatten(1)
            return self.classifier(x)

    return MobileNetV2()


def torch_reference(pth, implementation: str = "auto"):
    """``(model in eval mode, implementation name)`` with the .pth loaded strictly."""
    import torch

    model = None
    name = "builtin"
    if implementation in ("auto", "torchvision"):
        try:
            import torchvision

            model = torchvision.models.mobilenet_v2(weights=None)
            name = f"torchvision {torchvision.__version__}"
        except Exception as exc:  # torchvision missing, or its C extension does not load
            if implementation == "torchvision":
                raise
            print(f"torchvision unavailable ({type(exc).__name__}: {exc}); using the builtin torch copy")
    if model is None:
        model = _builtin_torch_mobilenet_v2()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), name


def torch_outputs(model, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled features) of the torch model in eval mode on normalised NHWC input."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
        feats = torch.nn.functional.adaptive_avg_pool2d(model.features(x), (1, 1)).flatten(1)
        logits = model.classifier(feats)
    return logits.numpy().astype(np.float32), feats.numpy().astype(np.float32)


def dump_torchvision_classes(out) -> None:
    """Write torchvision's ImageNet-1k category names (index order), one per line.

    Reads ``torchvision/models/_meta.py`` directly from the installed torchvision
    wheel without importing the package (whose C extension may not load).
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torchvision is not installed in this environment")
    meta_path = Path(next(iter(spec.submodule_search_locations))) / "models" / "_meta.py"
    meta_spec = importlib.util.spec_from_file_location("_torchvision_meta", meta_path)
    meta = importlib.util.module_from_spec(meta_spec)
    meta_spec.loader.exec_module(meta)
    names = list(meta._IMAGENET_CATEGORIES)
    assert len(names) == 1000, len(names)
    Path(out).write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(names)} names from {meta_path}")
