"""Embedding throughput per backbone and runtime option, with dev-protocol quality beside each.

    uv run python bench/embedding.py                        # CPU here; CUDA (fp16 options) where present
    uv run python bench/embedding.py --models efficientnet_lite0@320 --runtimes eager onnx

Every option embeds the same preprocessed dev photos. Speed: timed batches interleaved option by
option, round after round, so a change in the machine's load hits every option alike; the speed-up is
the median over rounds of (eager fp32 time / option time) in the same round. "img per CPU-s" counts
the process's CPU time (every thread, spinning included): on a shared machine it moves less with the
other tenants' load than wall time does. Quality: R@1 and mAP@100
of the dev protocol (landmark queries against the gallery, as `landmarks eval` computes them) from one
full pass per option, and how far each option's vectors are from eager fp32's (lowest cosine, share of
queries whose nearest gallery photo is the same). Backbones without offline weights (DeiT, ResNet)
run with random weights: their speed is real, their R@1 is meaningless and left out.
Ends with the per-photo cost of decoding and resizing, the part of a search that is not the model.
"""

from __future__ import annotations

import argparse
import copy
import io
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Hub weights cannot be downloaded here: fail at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import DEV_DATA  # noqa: E402  (sets sys.path)
from PIL import Image  # noqa: E402

from landmarks.evaluation import metrics  # noqa: E402
from landmarks.evaluation.protocol import dev_protocol  # noqa: E402
from landmarks.images import Preprocessor, decode_image  # noqa: E402
from landmarks.models import Extractor, create_model  # noqa: E402
from landmarks.models.runtime import OnnxEmbedder, cpu_has_bf16  # noqa: E402

CPU_RUNTIMES = ("eager", "channels-last", "compile", "bf16", "onnx", "onnx-int8")
CUDA_RUNTIMES = ("eager-fp32", "eager", "channels-last", "compile")
DEFAULT_MODELS = ("efficientnet_lite0@320", "efficientnet_lite0@224", "deit_small_patch16_224@224", "resnet50@224")
CALIBRATION_PHOTOS = 64


@dataclass
class Option:
    name: str  # the table's label
    how: str  # how to get it in the product, or "bench only"
    embed: Callable[[np.ndarray], np.ndarray]  # (B, 3, H, W) float32 → (B, D) unit vectors
    setup_s: float = 0.0  # export / compile / quantisation time, paid once
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None


def normalised(vectors: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


def torch_option(
    name: str,
    how: str,
    module: torch.nn.Module,
    device: torch.device,
    *,
    dtype: torch.dtype,
    channels_last: bool,
    compile_: bool,
) -> Option:
    """A PyTorch path the product does not offer as such: fed from host float32 arrays, like embed_arrays."""
    module = module.to(device=device, dtype=dtype).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(memory_format=memory_format)
    if compile_:
        # Freezing folds batch norms into convolutions and lets inductor pre-pack the weights.
        torch._inductor.config.freezing = True
        module = torch.compile(module)

    @torch.inference_mode()
    def embed(batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(batch).to(device, non_blocking=True).to(dtype).contiguous(memory_format=memory_format)
        return normalised(module(images))

    return Option(name, how, embed)


def onnx_int8_option(fp32_model: Path, calibration: np.ndarray, out: Path) -> Option:
    """Static int8 (QDQ, per-channel weights), activations calibrated on gallery photos (not queries)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter({"images": calibration[i : i + 8]} for i in range(0, len(calibration), 8))

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser warns once per weight it leaves as is
    quantize_static(
        str(fp32_model),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    session = OnnxEmbedder(out)
    return Option("onnx int8 (static)", "bench only", lambda batch: normalised(torch.from_numpy(session(batch))))


def build_options(
    name: str,
    size: int,
    device: torch.device,
    runtimes: list[str],
    calibration: np.ndarray,
    warm_batch: int,
    workdir: Path,
) -> tuple[list[Option], bool]:
    try:
        network, pretrained = create_model(name, image_size=size), True
    except Exception:  # no offline weights: the hub is out of reach
        network, pretrained = create_model(name, image_size=size, pretrained=False), False
    config = network.config
    options: list[Option] = []
    for runtime in runtimes:
        started = time.perf_counter()
        module = copy.deepcopy(network)
        if runtime in ("channels-last", "compile"):  # bench-only variants: the device's own precision
            precision, dtype = ("fp16", torch.half) if device.type == "cuda" else ("fp32", torch.float32)
            compiled = runtime == "compile"
            label = f"{'torch.compile' if compiled else 'eager'} {precision} channels-last"
            option = torch_option(
                label, "bench only", module, device, dtype=dtype, channels_last=True, compile_=compiled
            )
        elif device.type == "cuda":
            if runtime == "eager-fp32":
                extractor = Extractor(module, config, source=name, device=device, half=False)
                option = Option("eager fp32", "half=False", extractor.embed_arrays)
            elif runtime == "eager":
                extractor = Extractor(module, config, source=name, device=device)
                option = Option("eager fp16", "default on CUDA", extractor.embed_arrays)
            else:
                raise SystemExit(f"unknown CUDA runtime {runtime!r}; choose from {', '.join(CUDA_RUNTIMES)}")
        elif runtime == "eager":
            option = Option(
                "eager fp32",
                'runtime="eager" (default)',
                Extractor(module, config, source=name, device=device).embed_arrays,
            )
        elif runtime == "bf16":
            option = Option(
                "bf16 autocast channels-last",
                'runtime="bf16"',
                Extractor(module, config, source=name, device=device, runtime="bf16").embed_arrays,
            )
        elif runtime in ("onnx", "onnx-int8"):
            extractor = Extractor(module, config, source=name, device=device, runtime="onnx", cache_dir=workdir)
            if runtime == "onnx":
                option = Option("onnxruntime fp32", 'runtime="onnx" / "auto"', extractor.embed_arrays)
            else:
                option = onnx_int8_option(
                    extractor._onnx.path, calibration, workdir / f"{config.backbone}-{size}-int8.onnx"
                )
        else:
            raise SystemExit(f"unknown CPU runtime {runtime!r}; choose from {', '.join(CPU_RUNTIMES)}")
        option.embed(calibration[:warm_batch])  # first call: compilation, kernel selection, lazy initialisation
        option.setup_s = time.perf_counter() - started
        options.append(option)
    return options, pretrained


def preprocess_all(paths: list[Path], preprocessor: Preprocessor) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return np.stack(list(pool.map(lambda path: preprocessor(decode_image(path)), paths)))


def fixed_batches(arrays: np.ndarray, batch_size: int):
    """Every photo once, in batches of one size (the last one padded), so compiled graphs see one shape."""
    for start in range(0, len(arrays), batch_size):
        batch = arrays[start : start + batch_size]
        if len(batch) < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), axis=0)])
        yield start, np.ascontiguousarray(batch)


def quality(
    vectors: np.ndarray, gallery_labels: np.ndarray, query_labels: list[str]
) -> tuple[float, float, np.ndarray]:
    gallery, queries = vectors[: len(gallery_labels)], vectors[len(gallery_labels) :]
    ranked, _ = metrics.top_k(queries, gallery, 100)
    relevance = metrics.relevance_matrix(gallery_labels[ranked], query_labels)
    counts = {label: int((gallery_labels == label).sum()) for label in set(query_labels)}
    return (
        metrics.recall_at_k(relevance, 1),
        metrics.map_at_k(relevance, [counts[label] for label in query_labels], 100),
        ranked[:, 0],
    )


def bench_model(
    spec: str, device: torch.device, runtimes: list[str], batch_sizes: list[int], rounds: int, protocol, workdir: Path
) -> tuple[list[str], dict[str, float]]:
    """The table's rows for one backbone, and each option's milliseconds per image at the first batch size."""
    name, _, size_text = spec.partition("@")
    size = int(size_text or 224)
    probe = create_model(name, pretrained=False, image_size=size).config
    preprocessor = Preprocessor(size, probe.mean, probe.std, probe.interpolation)
    gallery_paths = [path for path, _ in protocol.gallery]
    calibration = preprocess_all(
        gallery_paths[:: max(1, len(gallery_paths) // CALIBRATION_PHOTOS)][:CALIBRATION_PHOTOS], preprocessor
    )
    options, pretrained = build_options(name, size, device, runtimes, calibration, batch_sizes[0], workdir)

    # Quality: one full pass per option over the gallery and the landmark queries (real weights only;
    # with random weights, the first batches still show how far each option is from eager).
    photos = (
        gallery_paths + [path for path, _ in protocol.queries] if pretrained else gallery_paths[: 2 * max(batch_sizes)]
    )
    arrays = preprocess_all(photos, preprocessor)
    for option in options:
        parts = [option.embed(batch) for _, batch in fixed_batches(arrays, batch_sizes[0])]
        option.vectors = np.concatenate(parts)[: len(arrays)]
    reference = options[0].vectors
    gallery_labels = np.asarray([label for _, label in protocol.gallery], dtype=object)
    query_labels = [label for _, label in protocol.queries]
    base = quality(reference, gallery_labels, query_labels) if pretrained else None

    rows, ms_per_image = [], {}
    for batch_size in batch_sizes:
        batches = [batch for _, batch in fixed_batches(arrays, batch_size)][: max(1, len(arrays) // batch_size)]
        for option in options:
            option.times, option.cpu_times = [], []
            option.embed(batches[0])  # warm at this batch size (compiled graphs, CUDA kernels)
        for round_ in range(rounds):
            batch = batches[round_ % len(batches)]
            for option in options:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started, cpu_started = time.perf_counter(), time.process_time()
                option.embed(batch)  # returns host arrays: the GPU work is finished when it returns
                option.times.append(time.perf_counter() - started)
                option.cpu_times.append(time.process_time() - cpu_started)
        for option in options:
            speedup = statistics.median(b / t for b, t in zip(options[0].times, option.times, strict=True))
            cosine = float(np.min(np.sum(option.vectors * reference, axis=1)))
            if base is not None:
                r1, map100, top1 = quality(option.vectors, gallery_labels, query_labels)
                same_top1 = float(np.mean(top1 == base[2]))
                quality_cells = (
                    f"{r1:.3f} ({r1 - base[0]:+.3f}) | {map100:.3f} ({map100 - base[1]:+.3f}) | {same_top1:.3f}"
                )
            else:
                quality_cells = "n/a (random weights) | n/a | n/a"
            weights = "ImageNet" if pretrained else "random"
            ms_per_image.setdefault(option.name, statistics.median(option.times) / batch_size * 1000)
            rows.append(
                f"| {name}@{size} ({weights}) | {option.name} | {batch_size} | {batch_size / statistics.median(option.times):.1f} | "
                f"{batch_size / statistics.median(option.cpu_times):.1f} | "
                f"x{speedup:.2f} | {quality_cells} | {cosine:.4f} | {option.setup_s:.0f} | {option.how} |"
            )
    return rows, ms_per_image


def preprocessing_rows(protocol, size: int) -> list[str]:
    """Decode and resize cost per photo on one thread, for dev photos and 12 MP phone photos.

    "reduce first": an integer box reduction to at least 960 px (twice the local features' 480 px) in
    the request's thread before the model's bicubic resize; the cosine compares the embeddings
    (default model, eager) of the two paths on the same photos.
    """
    extractor = Extractor(
        create_model(image_size=size),
        create_model(pretrained=False, image_size=size).config,
        source="default",
        device="cpu",
    )
    small = [path.read_bytes() for path, _ in protocol.queries[:40]]
    big = []
    for data in small[:5]:
        out = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(
            out, "JPEG", quality=90
        )
        big.append(out.getvalue())
    rows = []
    for label, samples in (("dev photo (≤ 640 px)", small), ("12 MP JPEG (4032x3024)", big)):
        decode_s, resize_s, reduced_s, cosines = [], [], [], []
        for data in samples:
            started = time.perf_counter()
            image = decode_image(data)
            decoded = time.perf_counter()
            plain = extractor.preprocess(image)
            resized = time.perf_counter()
            factor = max(1, max(image.size) // 960)
            reduced = extractor.preprocess(image.reduce(factor) if factor > 1 else image)
            decode_s.append(decoded - started)
            resize_s.append(resized - decoded)
            reduced_s.append(time.perf_counter() - resized)
            if factor > 1:
                cosines.append(float(np.sum(extractor.embed_arrays([plain])[0] * extractor.embed_arrays([reduced])[0])))
        cells = [statistics.median(values) * 1000 for values in (decode_s, resize_s, reduced_s)]
        cosine = f"{min(cosines):.4f}" if cosines else "same path"
        rows.append(f"| {label} | {cells[0]:.1f} | {cells[1]:.1f} | {cells[2]:.1f} | {cosine} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), help="NAME@SIZE, e.g. efficientnet_lite0@320"
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=None,
        help=f"CPU: {' '.join(CPU_RUNTIMES)}; CUDA: {' '.join(CUDA_RUNTIMES)} (first is the baseline)",
    )
    parser.add_argument(
        "--batch-size", type=int, nargs="+", default=None, help="default: 16 on CPU; 16 and 128 on CUDA"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed batches per option (default: 5 on CPU, 30 on CUDA)"
    )
    parser.add_argument("--data", type=Path, default=DEV_DATA, help="the landmarks-dev folder")
    args = parser.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    cuda = device.type == "cuda"
    runtimes = args.runtimes or list(CUDA_RUNTIMES if cuda else CPU_RUNTIMES)
    batch_sizes = args.batch_size or ([16, 128] if cuda else [16])
    rounds = args.rounds or (30 if cuda else 5)
    protocol = dev_protocol(args.data)

    where = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, bf16 units: {cpu_has_bf16()}"
    )
    print(
        f"device: {device.type} ({where}); torch {torch.__version__}; dev protocol: {len(protocol.gallery)} gallery, {len(protocol.queries)} landmark queries\n"
    )
    print(
        "| model | option | batch | img/s | img per CPU-s | speed-up vs eager | R@1 (Δ) | mAP@100 (Δ) | same top-1 | min cos vs eager | setup s | in the product |"
    )
    print("|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
    first: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        # A fresh ONNX cache (bench_model's workdir): the setup column shows the export.
        for spec in args.models:
            rows, ms_per_image = bench_model(spec, device, runtimes, batch_sizes, rounds, protocol, Path(workdir))
            first = first or ms_per_image
            for row in rows:
                print(row, flush=True)
    size = int(args.models[0].partition("@")[2] or 224)
    model = ", ".join(f"{name} {ms:.1f}" for name, ms in first.items())
    print(
        f"\nBeside the model: decoding and resizing one photo on one thread ({size} px). The model's ms per image in a batch of {batch_sizes[0]} ({args.models[0]}): {model}.\n"
    )
    print("| photo | decode ms | resize + normalise ms | reduce first, then resize ms | min cos, reduced vs plain |")
    print("|:---|---:|---:|---:|---:|")
    for row in preprocessing_rows(protocol, size):
        print(row)


if __name__ == "__main__":
    main()
