"""Output images per second of the occlusion augmentations beside erasing (kornia, torchvision).

    python benchmarks/bench_occlusion_aug.py [--device cuda] [--batch 64] [--repeats 20]

One batch of B images (real Market-1501 crops from ../shared/data when present, else random)
goes through each method; the table gives the median time per call and the output images per
second. OcclusionAugmentation writes 5 views per input (5*B outputs) where RandomErasing and
RandomBandOcclusion write one, so the rates are compared per output image. The target of the
project is a ratio to kornia of at least 0.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from oamn.occlusion_aug import OcclusionAugmentation, RandomBandOcclusion

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market1501_mini"


def load_batch(batch: int, height: int, width: int, data: Path) -> tuple[torch.Tensor, str]:
    files = sorted(data.glob("bounding_box_train/*.jpg"))[:batch] if data.is_dir() else []
    if len(files) < batch:
        return torch.rand(batch, 3, height, width), "random pixels"
    images = [pil_to_tensor(Image.open(f).convert("RGB")).float().div(255) for f in files]
    resized = [F.interpolate(im[None], size=(height, width), mode="bilinear")[0] for im in images]
    return torch.stack(resized), f"{batch} real images from {data}"


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    device = torch.device(args.device)
    images, source = load_batch(args.batch, args.height, args.width, args.data)
    images = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    oamn = OcclusionAugmentation()
    kornia_erasing = K.RandomErasing(p=1.0)
    tv_erasing = v2.RandomErasing(p=1.0)
    band_occlusion = RandomBandOcclusion(p=1.0)

    methods: dict[str, tuple[Callable[[], object], int]] = {
        "kornia RandomErasing(p=1), batched": (lambda: kornia_erasing(images), args.batch),
        "torchvision v2.RandomErasing(p=1), per image": (
            lambda: [tv_erasing(image) for image in images],
            args.batch,
        ),
        f"oamn OcclusionAugmentation, {oamn.num_views} views": (
            lambda: oamn(images, generator=generator),
            oamn.num_views * args.batch,
        ),
        "oamn RandomBandOcclusion(p=1), 1 view": (lambda: band_occlusion(images), args.batch),
    }
    print(
        f"torch {torch.__version__}, kornia {kornia.__version__}, "
        f"torchvision {torchvision.__version__}, device {device}, {torch.get_num_threads()} threads"
    )
    print(f"batch {tuple(images.shape)} of {source}; median of {args.repeats} calls\n")
    rates = {}
    print(f"{'method':<48} {'ms/call':>9} {'outputs':>8} {'images/s':>10} {'vs kornia':>10}")
    for name, (fn, outputs) in methods.items():
        seconds = median_seconds(fn, args.repeats, device)
        rates[name] = outputs / seconds
        ratio = rates[name] / next(iter(rates.values()))
        print(f"{name:<48} {seconds * 1e3:9.2f} {outputs:8d} {rates[name]:10.0f} {ratio:9.2f}x")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
