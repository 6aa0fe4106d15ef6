import json

import pytest

from qhw.cli import main
from qhw.quant.adaqat import AdaQATConfig
from qhw.quant.checkpoint import load_checkpoint_full
from qhw.quant.train import TrainConfig, train




def test_train_api_with_adaqat_on_synthetic_writes_logs(tmp_path):
    cfg = TrainConfig(
        model="resnet8",
        width=2,
        dataset="synthetic",
        synthetic_train=48,
        synthetic_test=16,
        quant="w4a4",
        adaqat=AdaQATConfig(granularity="layer", lam=1.0, eta_w=0.05, eta_a=0.05),
        epochs=2,
        batch_size=16,
        out_dir=str(tmp_path / "run"),
    )
    messages = []
    r = train(cfg, progress=messages.append)
    assert any(m.startswith("epoch 2/2") for m in messages)
    assert len(r.history) == 2 and set(r.history[0]["bits"]) >= {"w:s1.b1.conv1", "a:s2.b1.conv1"}
    log = json.loads((tmp_path / "run" / "adaqat_log.json").read_text())
    assert [row["epoch"] for row in log["history"]] == [1, 2]
    # 3 steps per epoch, one update each: N moved down from 8 for every learned bit-width
    assert all(p["updates"] == 6 and p["value"] < 8.0 for p in log["params"])
    ck = load_checkpoint_full(r.checkpoint)
    assert ck.model.quant_config() == r.model.quant_config()
    assert ck.metrics["top1"] == pytest.approx(r.top1, abs=1e-3)
    assert ck.metrics["bitops"] == r.cost["bitops"] and ck.adaqat["config"]["granularity"] == "layer"


def test_cli_train_json_output(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["train", "--model", "resnet8", "--width", "2", "--dataset", "synthetic", "--synthetic-train", "32",
         "--quant", "pow2", "--epochs", "1", "--batch-size", "16", "--out", str(out), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert doc["ok"] is True and 0.0 <= doc["top1"] <= 100.0
    assert doc["layers"]["s2.b1.conv1"]["w_kind"] == "pow2" and doc["layers"]["stem"]["w_bits"] == 8
    assert doc["weight_memory_bits"] > 0 and doc["wcr"] > 1 and doc["bitops_gb"] > 0
    assert "epoch 1/1" in captured.err  # progress on stderr, JSON alone on stdout
    assert (out / "checkpoint.pt").is_file() and json.loads((out / "metrics.json").read_text())["top1"] == doc["top1"]


def test_cli_bad_config_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": {"s1.b1.conv1": {"w_bits": 12}}}))
    code = main(["train", "--dataset", "synthetic", "--quant", str(bad), "--epochs", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"qhw train: error: quant config {bad}: layer s1.b1.conv1: w_bits for uniform must be between 2 and 8, not 12"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quant", "nosuch"], "is neither a file nor a built-in config"),
        (["--model", "resnet50"], "unknown model 'resnet50'"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--adaqat", "--init-bits", "12"], "init_w must be in"),
        (["--init-from", "/nonexistent/c.pt"], "checkpoint not found"),
    ],
)
def test_cli_argument_errors(argv, message, capsys):
    code = main(["train", "--dataset", "synthetic", "--synthetic-train", "8", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
