"""What training more of cxr-lite's image tower costs per view: why `cxr-lite-2` trains only its last stage.

Run: python benchmarks/tower_tail_cost.py

For the last 1, 2 and 3 timm stages of EfficientNet-Lite0 (+ its head convolution), one
forward + backward + AdamW step from the cached feature map they start from, batch 64, batch
norms in eval mode as ``ppad pretrain`` runs them; prints milliseconds per view, each the last of
three repeats, side by side with the frozen front's forward per view.
"""

from __future__ import annotations

import time

import torch

from ppad.backbones import DualTowerBackbone, DualTowerSpec

BATCH = 64


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(BATCH, 3, 224, 224)
    for stages in (1, 2, 3):
        backbone = DualTowerBackbone(DualTowerSpec(trained_stages=stages))
        with torch.no_grad():
            for _ in range(2):
                start = time.perf_counter()
                pooled, maps = backbone.front_features(images)
                front = time.perf_counter() - start
        optimizer = torch.optim.AdamW(backbone.tail_parameters(), lr=1e-4)
        for _ in range(3):
            start = time.perf_counter()
            loss = backbone.tail_features(maps.contiguous()).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step = time.perf_counter() - start
        print(
            f"last {stages} stage(s): train {step / BATCH * 1e3:.1f} ms/view; "
            f"frozen front {front / BATCH * 1e3:.1f} ms/view ({torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
