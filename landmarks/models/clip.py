"""CLIP image embeddings: open_clip's image tower (ViT-B/16), its projected output L2-normalised.

Only the image tower is built: the text tower (60 M more parameters) is never needed to embed
photos. Weights come from a local file, either the full open_clip checkpoint as the Hugging Face hub
ships it (`open_clip_pytorch_model.bin` or `open_clip_model.safetensors`, image tower under
`visual.*`) or the image tower's state dict alone; without a file, from open_clip's pretrained tag
when the hub is reachable.

open_clip takes seconds to import, so it is imported only when a CLIP network is built.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from landmarks.models.layers import L2Norm
from landmarks.models.network import ModelConfig

CLIP_MODEL_NAME = "clip_vit_b16"
# The LAION-2B ViT-B/16 was trained with nn.GELU, the activation open_clip's "ViT-B-16" config
# builds. OpenAI's weights need QuickGELU (extra={"quick_gelu": True}): the activation cannot be
# told from a state dict, and the wrong one gives worse embeddings without any error.
CLIP_PRETRAINED_TAG = "laion2b_s34b_b88k"

# open_clip's preprocessing for every CLIP ViT (OPENAI_DATASET_MEAN/STD, 224 px, bicubic), written
# out so that the registry need not import open_clip; tests check them against open_clip's config.
CLIP_VIT_B16 = ModelConfig(
    backbone="ViT-B-16",  # open_clip's model name
    architecture="clip",
    image_size=224,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    interpolation="bicubic",
    extra={"open_clip_pretrained": CLIP_PRETRAINED_TAG, "quick_gelu": False},
)


class WeightsUnavailable(FileNotFoundError):
    """Pretrained weights neither given as a local file nor obtainable from the hub."""


def build_image_tower(config: ModelConfig) -> nn.Module:
    """open_clip's image tower for `config.backbone`, randomly initialised, at `config.image_size`."""
    import open_clip
    from open_clip.model import _build_vision_tower

    model_config = open_clip.get_model_config(config.backbone)
    if model_config is None:
        raise ValueError(f"open_clip has no model named {config.backbone!r}")
    vision_config = {**model_config["vision_cfg"], "image_size": config.image_size}
    # open_clip's own recipe for the image tower (what open_clip.create_model calls for `.visual`),
    # called directly so that no text tower is ever allocated.
    return _build_vision_tower(
        model_config["embed_dim"], vision_config, quick_gelu=bool(config.extra.get("quick_gelu", False))
    )


class ClipImageNet(nn.Module):
    """Image batch (B, 3, H, W), normalised with CLIP's mean/std → unit-length CLIP embeddings (B, 512)."""

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else build_image_tower(config)
        self.norm = L2Norm()
        self.output_dim = self.backbone.output_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The tower already pools (class token) and projects into CLIP's joint space.
        return self.norm(self.backbone(images))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            payload = load_file(str(path), device="cpu")
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors each raise their own kind
        raise ValueError(f"{path} is not a PyTorch or safetensors weights file ({exc})") from None
    # open_clip's training checkpoints wrap the weights, and DDP prefixes every key with "module.".
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of weight names to tensors)")
    return {key.removeprefix("module."): tensor for key, tensor in payload.items()}


def load_image_tower_weights(tower: nn.Module, path: str | Path, model_name: str = "ViT-B-16") -> None:
    """Load a full open_clip checkpoint's `visual.*` weights, or an image-tower state dict, into `tower`.

    The positional embedding is resized (bicubic, as open_clip does) when the tower was built for
    another input size than the weights.
    """
    from open_clip.model import resize_pos_embed

    path = Path(path)
    state = _read_state_dict(path)
    if any(key.startswith("visual.") for key in state):
        state = {key.removeprefix("visual."): tensor for key, tensor in state.items() if key.startswith("visual.")}
    expected = tower.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(expected.keys() & state.keys())
        if key != "positional_embedding" and state[key].shape != expected[key].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = [
            f"{len(missing)} weights missing (e.g. {', '.join(missing[:3])})" if missing else "",
            f"{len(unexpected)} unknown weights (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
            f"wrong shapes: {', '.join(wrong_shape[:3])}" if wrong_shape else "",
        ]
        raise ValueError(
            f"{path} is not a CLIP {model_name} state dict: {'; '.join(p for p in problems if p)}. Expected open_clip's "
            "layout: a full checkpoint with the image tower under visual.* (open_clip_pytorch_model.bin as the "
            "Hugging Face hub ships it) or the image tower's state dict alone"
        )
    # resize_pos_embed works on a full model's state dict; hand it the one key it reads.
    wrapped = {"visual.positional_embedding": state["positional_embedding"]}
    resize_pos_embed(wrapped, SimpleNamespace(visual=tower))
    state["positional_embedding"] = wrapped["visual.positional_embedding"]
    tower.load_state_dict(state, strict=True)


def clip_image_tower(
    config: ModelConfig, *, pretrained: bool = True, weights_file: str | Path | None = None
) -> nn.Module:
    """The image tower with its weights: from `weights_file`, else from the hub when `pretrained`."""
    tower = build_image_tower(config)
    if weights_file is not None:
        load_image_tower_weights(tower, weights_file, config.backbone)
    elif pretrained:
        load_image_tower_weights(tower, _download_pretrained(config), config.backbone)
    return tower


def _download_pretrained(config: ModelConfig) -> str:
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    tag = config.extra.get("open_clip_pretrained", CLIP_PRETRAINED_TAG)
    source = get_pretrained_cfg(config.backbone, tag)
    if not source:
        raise ValueError(f"open_clip has no pretrained weights {tag!r} for {config.backbone}")
    try:
        return download_pretrained(source)
    except OSError:  # open_clip and huggingface_hub report an unreachable or offline hub as OSErrors
        repo = source.get("hf_hub", "").rstrip("/")
        where = f" (open_clip_pytorch_model.bin from https://huggingface.co/{repo})" if repo else ""
        raise WeightsUnavailable(
            f"CLIP {config.backbone} weights ({tag}) cannot be downloaded: the Hugging Face hub is unreachable. "
            f"Give a local weights file{where} with --weights-file PATH (LANDMARKS_WEIGHTS_FILE for the service)"
        ) from None
