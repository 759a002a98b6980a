"""The run report: held-out metrics through the same evaluation path as ``tfrestore eval``."""

import csv

from tfrestore.cli import main
from tfrestore.data import write_image
from tfrestore.training import train
from tfrestore.training.data import held_out_images
from tfrestore.training.run_config import load_run_config


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_report_and_tfrestore_eval_give_the_same_numbers(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tiny_config(data={"test": {"max_images": 2, "crop_size": 40}})
    result = train(cfg, output_dir=str(run))
    report = _read_csv(run / "report" / "metrics.csv")
    assert [r["image"] for r in report] == ["chelsea", "motorcycle", "mean"]
    # The report's held-out crops as files (8-bit values: written and read back exactly), then
    # `tfrestore eval` on the run directory with the report's seed and the run's degradation.
    clean = tmp_path / "clean"
    clean.mkdir()
    for name, img in held_out_images(load_run_config(result.config)):
        write_image(clean / f"{name}.png", img)
    eval_csv = tmp_path / "eval.csv"
    seed = result.config["seed"] + 2
    argv = ["eval", "--model", str(run), "--data", str(clean), "--seed", str(seed),
            "--lpips", "off", "--csv", str(eval_csv), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert _read_csv(eval_csv) == report
    # Another seed degrades differently: the equality above is not a coincidence.
    assert main(argv[:5] + ["--seed", str(seed + 1)] + argv[7:] + ["--overwrite"]) == 0
    assert _read_csv(eval_csv)[0]["psnr_in"] != report[0]["psnr_in"]
