"""The example scripts under examples/ (one per seed-notes section): each runs in a subprocess and its printed
numbers and written files are checked; a differential test runs the same scripts on pytorch-lightning 2.6.6."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("s*.py"))


def run_script(script: Path, root: Path, cwd: Path | None = None, core_only: bool = True) -> str:
    """Run an example with `--root root`; return stdout + stderr, failing with both when the exit code is not 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PL_TRAINER_MAX_EPOCHS", None)
    # As on a core-only install: the plain progress bar, summary table and CSV logger these tests read.
    runner = [str(Path(__file__).parent / "helpers" / "core_only.py")] if core_only else []
    proc = subprocess.run(
        [sys.executable, *runner, str(script), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd or root,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def run_example(name: str, root: Path) -> str:
    return run_script(EXAMPLES / name, root)


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_every_section_named_by_the_issue_has_a_script() -> None:
    assert SCRIPTS == [
        "s1_train_autoencoder.py",
        "s2_1_validate_and_test.py",
        "s2_3_early_stopping.py",
        "s3_pretrained_finetune.py",
        "s5_1_debugging_flags.py",
        "s6_2_predict.py",
        "s7_1_hardware_agnostic.py",
        "s7_3_gpu_flags.py",
    ]


def test_s1_trains_the_autoencoder_and_writes_lightning_logs(tmp_path: Path) -> None:
    out = run_example("s1_train_autoencoder.py", tmp_path)
    assert "epochs: 1, steps: 512" in out  # DataLoader(dataset) over 512 digits: batch size 1
    before = number(r"reconstruction mse: before ([\d.]+)", out)
    after = number(r"-> after ([\d.]+)", out)
    assert after < before / 3
    assert "log_dir: lightning_logs/version_0" in out
    assert "| encoder | Encoder | 50.4 K" in out  # the model summary: Linear(28 * 28, 64) + Linear(64, 3)
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in out
    assert (tmp_path / "lightning_logs/version_0/checkpoints/epoch=0-step=512.ckpt").is_file()
    assert "wrote: lightning_logs/version_0/checkpoints" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lightning_logs"]  # nothing written elsewhere


def test_s2_1_validates_tests_and_collects_test_step_outputs(tmp_path: Path) -> None:
    out = run_example("s2_1_validate_and_test.py", tmp_path)
    assert number(r"val_loss after fit: ([\d.]+)", out) < 0.1
    assert "trainer.test returned: [['test_loss']]" in out
    assert re.search(r"│?\s*test_loss\s+0\.\d+", out)  # the printed results table
    plain = number(r"trainer.test returned: .*test_loss=([\d.]+)", out)
    # The answer to the notes' question: test_step's return value reaches on_test_batch_end.
    assert "scored 100 images in 4 batches" in out
    assert 0 <= number(r"hardest digit to reconstruct: (\d)", out) <= 9
    assert number(r"hardest digit to reconstruct: \d; test_loss=([\d.]+)", out) == plain  # batch-size weighted
    assert "lightning_logs/version_0/metrics.csv header: epoch,step,val_loss" in out
    assert "lightning_logs/version_1/metrics.csv header: epoch,step,test_loss" in out
    # Lightning's fit logs val_loss once per epoch (steps 24, 49, 74 for 25 batches per epoch).
    rows = (tmp_path / "lightning_logs/version_0/metrics.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [["0", "24"], ["1", "49"], ["2", "74"]]


S5_1_LINES = [
    "fast_dev_run=True: global_step=1 training_steps=1 validation_steps=1 sanity_batches=[0] val_batches=[1]",
    "fast_dev_run=7: global_step=7 training_steps=7 validation_steps=7 sanity_batches=[0] val_batches=[7]",
    "limit_train_batches=0.1, limit_val_batches=0.01: global_step=10 training_steps=10 validation_steps=2"
    " sanity_batches=[1] val_batches=[1]",
    "limit_train_batches=10, limit_val_batches=5: global_step=10 training_steps=10 validation_steps=7"
    " sanity_batches=[2] val_batches=[5]",
    "num_sanity_val_steps=2: global_step=10 training_steps=10 validation_steps=102 sanity_batches=[2]"
    " val_batches=[100]",
]


def test_s5_1_debugging_flags_limit_the_batches(tmp_path: Path) -> None:
    out = run_example("s5_1_debugging_flags.py", tmp_path)
    for line in S5_1_LINES:
        assert line in out
    assert out.count("Running in `fast_dev_run` mode") == 2
    # The table of the notes (Lightning 2.6 adds the Mode/FLOPs columns, and In/Out sizes from example_input_array).
    assert "0 | net   | Sequential  | 132 K  | train |" in out
    assert "1 | net.0 | Linear      | 131 K  | train |" in out
    assert "2 | net.1 | BatchNorm1d | 1.0 K  | train |" in out
    assert "SummaryModel has 132608 parameters" in out
    # fast_dev_run suppresses logging: only the three limit runs and the summary run made a version directory.
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == [f"version_{i}" for i in range(4)]


def test_s6_2_predicts_with_predict_step_and_mc_dropout(tmp_path: Path) -> None:
    out = run_example("s6_2_predict.py", tmp_path)
    assert "load_from_checkpoint: hparams={'hidden': 32} output shape=(1, 10) same=True" in out
    assert (tmp_path / "best_model.ckpt").is_file()
    shapes = "3 batches, shapes [(100, 10), (100, 10), (97, 10)]"
    assert f"predict: {shapes}" in out
    assert f"mc dropout predict: {shapes}, dropout active=True" in out
    assert number(r"predict: .* accuracy ([\d.]+)", out) > 0.8  # a 5-epoch digit classifier
    assert number(r"mc dropout predict: .* accuracy ([\d.]+)", out) > 0.7


def test_s7_1_tensors_and_buffers_follow_the_module(tmp_path: Path) -> None:
    out = run_example("s7_1_hardware_agnostic.py", tmp_path)
    assert "before fit: self.device=cpu sigma on cpu, dtype torch.float32" in out
    assert "in training_step: x on cpu, z.to(x) on cpu, sigma on cpu, self.device=cpu" in out
    assert (
        "after .to(float64): self.dtype=torch.float64 sigma dtype torch.float64, z dtype torch.float64,"
        " output dtype torch.float64"
    ) in out
    assert "state_dict has sigma: True" in out


GPU_FORMS = [
    'Trainer(accelerator="gpu", devices=k)',
    'Trainer(accelerator="gpu", devices=list(range(k)))',
    'Trainer(accelerator="gpu", devices=[0, 1])',
    'Trainer(accelerator="gpu", devices="0, 1")',
    'Trainer(accelerator="gpu", devices=-1)',
    "Trainer(accelerator=\"gpu\", devices='-1')",
]


def test_s7_3_gpu_forms_fail_clearly_without_a_gpu_and_cpu_forms_train(tmp_path: Path) -> None:
    import torch

    out = run_example("s7_3_gpu_flags.py", tmp_path)
    if not torch.cuda.is_available():
        for form in GPU_FORMS:
            assert f"{form} -> MisconfigurationException: No supported gpu backend found!" in out
    cpu_forms = ['Trainer(accelerator="cpu")', 'Trainer(accelerator="cpu", devices=1)']
    cpu_forms.append('Trainer(accelerator="cpu", devices="1")')
    for form in cpu_forms:
        assert f"{form} -> accelerator=cpu devices=[0] root_device=cpu\n  trained 4 steps on cpu" in out
    assert 'Trainer(accelerator="cpu", devices=k) -> accelerator=cpu devices=[0, 1] root_device=cpu' in out
    assert "  strategy: DDPStrategy" in out
    assert out.count("trained 4 steps on") == 4


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["s5_1_debugging_flags.py", "s7_1_hardware_agnostic.py"])
def test_examples_print_the_same_under_pytorch_lightning(name: str, tmp_path: Path) -> None:
    """The same script with `fulgor` replaced by `pytorch_lightning` prints the same result lines."""
    pytest.importorskip("pytorch_lightning")
    copies = tmp_path / "examples"
    copies.mkdir()
    for path in EXAMPLES.glob("*.py"):
        text = path.read_text().replace("import fulgor as pl", "import pytorch_lightning as pl")
        text = text.replace("from fulgor import", "from pytorch_lightning import")
        text = text.replace("from fulgor.callbacks import", "from pytorch_lightning.callbacks import")
        (copies / path.name).write_text(text)
    (tmp_path / "fulgor").mkdir()
    (tmp_path / "lightning").mkdir()
    ours = run_example(name, tmp_path / "fulgor")
    theirs = run_script(copies / name, tmp_path / "lightning", core_only=False)  # Lightning imports rich eagerly

    result_line = re.compile(
        r"^(fast_dev_run|limit_|num_sanity|before fit|in training_step|after \.to|state_dict|summary printed)"
    )

    def results(text: str) -> list[str]:
        return [line for line in text.splitlines() if result_line.match(line)]

    assert results(ours) == results(theirs)
    assert len(results(ours)) >= 4
