"""Checkpoints: metadata round trip, strict torchvision compatibility, clear errors."""
from __future__ import annotations

import pickle

import pytest
import torch
from torchvision import models as tvm

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.model import ModelMeta
from tests.conftest import seeded_model

META = ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), 224)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "m.pt"
    model = seeded_model("mobilenet_v2", seed=7)
    save_checkpoint(path, model, META, metrics={"val_acc": 0.5}, data_fingerprint="abc",
                    thresholds={"haycam+": {"mode": "fraction", "value": 0.4}})
    return path, model


def test_round_trip_keeps_weights_and_metadata(saved):
    path, model = saved
    ck = load_checkpoint(path)
    assert ck.meta == META and ck.metrics == {"val_acc": 0.5} and ck.data_fingerprint == "abc"
    assert ck.thresholds["haycam+"]["value"] == 0.4
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ck.model(x)[0], model(x)[0])


def test_state_dict_loads_into_plain_torchvision_strict(saved):
    path, _ = saved
    blob = torch.load(path, weights_only=True)
    tvm.mobilenet_v2(num_classes=2).load_state_dict(blob["state_dict"], strict=True)


def test_half_storage_loads_as_float32(tmp_path):
    model = seeded_model("resnet18")
    save_checkpoint(tmp_path / "h.pt", model, ModelMeta("resnet18", ("a", "b")), half=True)
    ck = load_checkpoint(tmp_path / "h.pt")
    p = next(ck.model.parameters())
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, next(model.parameters()).half().float())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"bad\.pt: cannot be read"):
        load_checkpoint(bad)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_pickle_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "maskstream-checkpoint", "x": Evil()}, evil, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="evil.pt: cannot be read as a safe torch file"):
        load_checkpoint(evil)


def test_not_a_maskstream_checkpoint(tmp_path):
    p = tmp_path / "plain.pt"
    torch.save(tvm.resnet18(num_classes=2).state_dict(), p)
    with pytest.raises(CheckpointError, match="not a maskstream checkpoint"):
        load_checkpoint(p)


def test_weights_that_do_not_match_the_backbone(tmp_path, saved):
    path, _ = saved
    blob = torch.load(path, weights_only=True)
    blob["meta"]["backbone"] = "resnet18"
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match backbone 'resnet18' with 2 classes"):
        load_checkpoint(tmp_path / "mismatch.pt")
    blob["meta"]["backbone"] = "vgg"
    torch.save(blob, tmp_path / "badmeta.pt")
    with pytest.raises(CheckpointError, match="bad metadata"):
        load_checkpoint(tmp_path / "badmeta.pt")
