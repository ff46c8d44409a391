"""Save -> load is bit-identical; broken checkpoints fail with one line, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from dtx.cli import main
from dtx.errors import CheckpointError, ConfigError, DtxError
from dtx.model.checkpoint import META_FILE, WEIGHTS_FILE, load_checkpoint
from dtx.model.decouple import decouple
from helpers import tensors, texts
from tiny_models import TINY_ARCHS

from conftest import ALL_ARCHS


@pytest.fixture(scope="module")
def ckpt(model_dir, tmp_path_factory):
    return decouple(model_dir("bert"), tmp_path_factory.mktemp("ck") / "bert", split=2, compress=2)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_round_trip_is_bit_identical(arch, model_dir, tmp_path):
    out = tmp_path / "ck"
    made = decouple(model_dir(arch), out, split=3, compress=4, task="qa")
    again = load_checkpoint(out)
    a, b = made.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    seg = again.segmenter()
    q = tensors(seg.pad([seg.question(t) for t in texts(1, 2, 3, 10)]))
    p = tensors(seg.pad([seg.passage(t)[0] for t in texts(2, 2, 5, 30)]))
    with torch.no_grad():
        for x, y in zip(made.model(*q, *p), again.model(*q, *p)):
            assert torch.equal(x, y)
    teacher = again.teacher()
    assert type(teacher).__name__.endswith("ForQuestionAnswering")


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_decouple_is_deterministic(arch, model_dir, tmp_path):
    a = decouple(model_dir(arch, "pair"), tmp_path / "a", split=1, compress=2)
    b = decouple(model_dir(arch, "pair"), tmp_path / "b", split=1, compress=2)
    assert a.meta.weights_sha256 == b.meta.weights_sha256
    assert a.config.task == "pair" and a.config.num_labels == 3


def broken_copy(ckpt, tmp_path, name="broken"):
    dst = tmp_path / name
    shutil.copytree(ckpt.path, dst)
    return dst


def edit_meta(path, **changes):
    meta = json.loads((path / META_FILE).read_text())
    meta["decoupling"].update(changes)
    (path / META_FILE).write_text(json.dumps(meta))


def cli_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_missing_weights(ckpt, tmp_path):
    bad = broken_copy(ckpt, tmp_path)
    (bad / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(bad)
    assert "missing model.safetensors" in cli_error(["info", str(bad)])


def test_corrupted_weights(ckpt, tmp_path):
    bad = broken_copy(ckpt, tmp_path)
    data = bytearray((bad / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / WEIGHTS_FILE).write_bytes(bytes(data))
    assert "corrupted" in cli_error(["info", str(bad)])


def test_truncated_weights_with_matching_hash(ckpt, tmp_path):
    """A file that passes the hash but is not valid safetensors is still one line."""
    from dtx.atomic import sha256_file

    bad = broken_copy(ckpt, tmp_path)
    (bad / WEIGHTS_FILE).write_bytes((bad / WEIGHTS_FILE).read_bytes()[:1000])
    meta = json.loads((bad / META_FILE).read_text())
    meta["weights_sha256"] = sha256_file(bad / WEIGHTS_FILE)
    (bad / META_FILE).write_text(json.dumps(meta))
    assert "cannot be read" in cli_error(["info", str(bad)])


@pytest.mark.parametrize("change,needle", [({"split": 9}, "outside 0..4"), ({"split": -1}, "outside 0..4"), ({"compress": 5}, "does not divide")])
def test_bad_settings_in_checkpoint(ckpt, tmp_path, change, needle):
    bad = broken_copy(ckpt, tmp_path)
    edit_meta(bad, **change)
    with pytest.raises(ConfigError, match=needle):
        load_checkpoint(bad)
    assert needle in cli_error(["info", str(bad)])


def test_weights_from_another_checkpoint(ckpt, model_dir, tmp_path):
    other = decouple(model_dir("bert"), tmp_path / "other", split=3, compress=2)
    bad = broken_copy(ckpt, tmp_path)
    shutil.copy(other.path / WEIGHTS_FILE, bad / WEIGHTS_FILE)
    meta = json.loads((bad / META_FILE).read_text())
    meta["weights_sha256"] = other.meta.weights_sha256
    (bad / META_FILE).write_text(json.dumps(meta))
    assert "belongs to another checkpoint" in cli_error(["info", str(bad)])


def test_not_a_checkpoint(tmp_path):
    assert "does not exist" in cli_error(["info", str(tmp_path / "nope")])
    assert "not a dtx checkpoint" in cli_error(["info", str(tmp_path)])
    (tmp_path / META_FILE).write_text("{not json")
    assert "not valid JSON" in cli_error(["info", str(tmp_path)])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--split", "7"], "outside 0..4"),
        (["--split", "2", "--compress", "3"], "does not divide"),
        (["--split", "2", "--max-passage-len", "500"], "exceeds the model's"),
    ],
)
def test_decouple_rejects_bad_requests(model_dir, tmp_path, args, needle):
    out = tmp_path / "ck"
    assert needle in cli_error(["decouple", str(model_dir("bert")), *args, "-o", str(out)])
    assert not out.exists(), "a failed decouple must not leave a directory behind"


def test_bare_encoder_needs_task(tmp_path):
    from tiny_models import minilm_path

    assert "--task" in cli_error(["decouple", str(minilm_path()), "--split", "2", "-o", str(tmp_path / "x")])
    assert "not a Hugging Face model directory" in cli_error(["decouple", str(tmp_path), "--split", "2", "-o", str(tmp_path / "y")])


def test_existing_output_is_kept(ckpt, model_dir, tmp_path):
    out = tmp_path / "ck"
    decouple(model_dir("bert"), out, split=2)
    before = (out / WEIGHTS_FILE).read_bytes()
    assert "already exists" in cli_error(["decouple", str(model_dir("bert")), "--split", "3", "-o", str(out)])
    assert (out / WEIGHTS_FILE).read_bytes() == before
    result = CliRunner().invoke(main, ["decouple", str(model_dir("bert")), "--split", "3", "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).config.split == 3


def test_info_reports_parts_and_cost(ckpt, tmp_path):
    report = tmp_path / "info.json"
    result = CliRunner().invoke(main, ["info", str(ckpt.path), "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    params = data["parameters"]
    assert params["total"] == sum(p.numel() for p in ckpt.model.parameters())
    assert params["compressor"] == 32 * 16 + 16 and params["decompressor"] == 16 * 32 + 32
    window = ckpt.config.max_passage_len  # 64 here: the default 150-token passage is cut to the window it is read in
    assert data["cost"]["coupled_token_layers"] == 20 * (32 + min(150, window)) * 4
    assert "2 / 2 of 4" in result.output


def test_dtx_error_is_the_one_family():
    assert issubclass(CheckpointError, DtxError) and issubclass(ConfigError, DtxError)
