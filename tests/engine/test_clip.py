"""CLIP ViT-B/16 image embeddings from a local weights file: loading, embedding, export, and the commands.

The weights file is written by the `clip_checkpoint` fixture (tests/conftest.py) in the hub's layout;
nothing is downloaded.
"""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import timm
import torch
from safetensors.torch import save_file

from landmarks.evaluation.protocol import materialize_gallery
from landmarks.images import decode_image
from landmarks.models import create_model, export_torchscript, load_extractor
from landmarks.models.clip import WeightsUnavailable
from tests.support import dev_protocol


@pytest.fixture(scope="module")
def photos():
    protocol = dev_protocol()
    return [decode_image(path) for path, _ in protocol.queries[:4]]


def image_tower_weights(checkpoint) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {key.removeprefix("visual."): tensor for key, tensor in state.items() if key.startswith("visual.")}


def test_clip_loads_the_hub_checkpoint_and_embeds_like_open_clip(clip_checkpoint, photos):
    extractor = load_extractor("clip_vit_b16", weights_file=clip_checkpoint, device="cpu")
    expected = image_tower_weights(clip_checkpoint)
    loaded = extractor.module.backbone.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    # Only the image tower is kept: every weight of the network is the tower's.
    assert all(key.startswith("backbone.") for key in extractor.module.state_dict())

    vectors = extractor.embed_images(photos)
    assert vectors.shape == (len(photos), 512) and extractor.dim == 512
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # The same photos through open_clip's own loader and encode_image: the same embeddings, and
    # our preprocessing is open_clip's (mean, std, size, interpolation).
    reference = open_clip.create_model("ViT-B-16", pretrained=str(clip_checkpoint)).eval()
    preprocess = reference.visual.preprocess_cfg
    config = extractor.config
    assert (config.image_size, config.mean, config.std, config.interpolation) == (
        preprocess["size"][0], preprocess["mean"], preprocess["std"], preprocess["interpolation"],
    )  # fmt: skip
    with torch.no_grad():
        batch = torch.from_numpy(np.stack([extractor.preprocess(photo) for photo in photos]))
        expected_vectors = reference.encode_image(batch, normalize=True).numpy()
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)


def test_clip_loads_an_image_tower_state_dict_at_another_input_size(tmp_path, clip_checkpoint):
    """A visual-only safetensors file, for 112-px inputs: the positional embedding is resized as open_clip does."""
    tower = image_tower_weights(clip_checkpoint)
    path = tmp_path / "clip_visual.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in tower.items()}, str(path))

    model = create_model("clip_vit_b16", weights_file=path, image_size=112).eval()
    assert torch.equal(model.backbone.conv1.weight, tower["conv1.weight"])
    assert torch.equal(model.backbone.proj, tower["proj"])
    reference = open_clip.create_model("ViT-B-16", pretrained=str(clip_checkpoint), force_image_size=112)
    assert model.backbone.positional_embedding.shape == (1 + 7 * 7, 768)
    assert torch.equal(model.backbone.positional_embedding, reference.visual.positional_embedding)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def _resnet18_state_dict(path):
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)


def _vit_b32_checkpoint(path):
    tower = open_clip.create_model("ViT-B-32", pretrained=None, load_weights=False).visual
    torch.save({f"visual.{key}": tensor for key, tensor in tower.state_dict().items()}, path)


def _text_file(path):
    path.write_text("not weights\n")


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (_resnet18_state_dict, ValueError, r"is not a CLIP ViT-B-16 state dict: \d+ weights missing"),
        (
            _vit_b32_checkpoint,
            ValueError,
            r"is not a CLIP ViT-B-16 state dict: wrong shapes: conv1.weight \(768, 3, 32, 32\)",
        ),
        (_text_file, ValueError, "is not a PyTorch or safetensors weights file"),
        (None, FileNotFoundError, "does not exist"),
    ],
    ids=["resnet18", "clip-vit-b32", "text-file", "missing"],
)
def test_a_file_that_is_not_clip_vit_b16_weights_is_refused(tmp_path, write, error, message):
    path = tmp_path / "weights.bin"
    if write is not None:
        write(path)
    with pytest.raises(error, match=message):
        create_model("clip_vit_b16", weights_file=path)


def test_clip_without_a_weights_file_and_no_hub_names_the_option(monkeypatch, tmp_path):
    # The hub as on a machine without internet access: offline, with an empty cache.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match=r"laion2b_s34b_b88k.*--weights-file PATH \(LANDMARKS_WEIGHTS_FILE"):
        create_model("clip_vit_b16")
    assert issubclass(WeightsUnavailable, FileNotFoundError)  # what serve and eval report as a missing file


def test_clip_exports_to_torchscript_with_the_same_fingerprint(tmp_path, clip_checkpoint, photos):
    eager = load_extractor("clip_vit_b16", weights_file=clip_checkpoint, image_size=112, device="cpu")
    path = export_torchscript(eager.module, tmp_path / "clip.torchscript")
    scripted = load_extractor(path, device="cpu")
    assert scripted.config == eager.config
    assert scripted.fingerprint == eager.fingerprint  # an index built by one serves the other
    np.testing.assert_allclose(scripted.embed_images(photos), eager.embed_images(photos), atol=1e-5)


def test_index_build_and_serve_select_clip_with_a_weights_file(tmp_path, clip_checkpoint, capsys):
    """`index build --model clip_vit_b16 --weights-file` builds an index that the service, given the same file, serves."""
    from api.service import SearchService
    from api.settings import Settings
    from cli import main

    protocol = dev_protocol()
    chosen = protocol.landmark_ids[:2]
    gallery = [item for landmark_id in chosen for item in [g for g in protocol.gallery if g[1] == landmark_id][:2]]
    gallery_dir = materialize_gallery(gallery, tmp_path / "gallery")
    index_dir = tmp_path / "index"
    # The command line in this process: a subprocess would spend longer importing torch than building.
    built = main(["index", "build", str(gallery_dir), "--out", str(index_dir), "--model", "clip_vit_b16",
                  "--weights-file", str(clip_checkpoint), "--device", "cpu", "--no-progress"])  # fmt: skip
    output = capsys.readouterr()
    assert built == 0, output.err + output.out
    assert "4 photos of 2 landmarks" in output.out and "model clip_vit_b16 (ViT-B-16@224, 512-d" in output.out

    # The service in this process (a server process would cost another model load): same model, same
    # file. Eager runtime: the default exports to ONNX first, which says nothing about model selection.
    settings = Settings(
        index_dir=index_dir, model="clip_vit_b16", weights_file=clip_checkpoint, device="cpu", runtime="eager"
    )
    service = SearchService.load(settings)
    try:
        [query] = service.embed([decode_image(gallery[0][0])])
        found = service.search_query(query, k=1)
    finally:
        service.close()
    assert service.gallery_size == 4
    assert found.result.matches[0].landmark_id == gallery[0][1]  # a gallery photo finds itself

    # `serve --weights-file` hands the file to the model loader: a missing one is a one-line error.
    missing = tmp_path / "missing.bin"
    assert main(["serve", "--index", str(index_dir), "--model", "clip_vit_b16", "--weights-file", str(missing)]) == 2
    assert f"weights file {missing} does not exist" in capsys.readouterr().err


def test_the_service_reads_its_weights_file_from_the_environment(monkeypatch, tmp_path):
    """LANDMARKS_WEIGHTS_FILE, for `landmarks up` and the containers, which start `serve` without flags."""
    from api.settings import Settings

    monkeypatch.setenv("LANDMARKS_WEIGHTS_FILE", str(tmp_path / "open_clip_pytorch_model.bin"))
    assert Settings.from_env().weights_file == tmp_path / "open_clip_pytorch_model.bin"
    monkeypatch.delenv("LANDMARKS_WEIGHTS_FILE")
    assert Settings.from_env().weights_file is None
