"""What the docs say the code prints is what it prints.

Two kinds of claims are checked, in every page of docs/:

- in a runnable ```python block, a `print(...)` line followed by a `# text` comment on the same line or on the lines
  right after it: `text` is what that print writes;
- a ```text block preceded by a `<!-- output -->` line: each of its lines appears in what the nearest runnable
  python block above it prints (stdout and stderr).

In a claim `...` stands for any text, and a decimal number shown with d digits after the point matches a printed
number within one unit of its last digit (|printed - shown| <= 10**-d): the stated tolerance. Whole numbers (file
names such as `epoch=1-step=8.ckpt`, counts) must match exactly. Runs use the optional packages hidden, as
tests/test_docs.py does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
OUTPUT = "<!-- output -->"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PRINT = re.compile(r"^(\s*)print\(.*\)\s*(?:#\s*(.*))?$")
COMMENT = re.compile(r"^\s*#\s?(.*)$")
DECIMAL = re.compile(r"-?\d+\.\d+")
MARK = "@@claim{}@@"


@dataclass
class Block:
    """A runnable python block of a page, the print claims in it and the output blocks that follow it."""

    where: str
    code: str
    prints: list[tuple[int, str]] = field(default_factory=list)  # (line index in code, claimed text)
    outputs: list[str] = field(default_factory=list)


def _print_claims(code: str) -> list[tuple[int, str]]:
    lines = code.splitlines()
    claims = []
    for index, line in enumerate(lines):
        match = PRINT.match(line)
        if not match:
            continue
        if match.group(2):
            claims.append((index, match.group(2).strip()))
            continue
        following = []
        for later in lines[index + 1 :]:
            comment = COMMENT.match(later)
            if not comment:
                break
            following.append(comment.group(1).strip())
        if following:
            claims.append((index, " ".join(following)))
    return claims


def claimed_blocks() -> list[Block]:
    """Every runnable python block that has a print claim or an output block after it."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        last: Block | None = None
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            lang, body = match.group(1), match.group(2)
            if lang == "python" and before != NO_RUN:
                line = text.count("\n", 0, match.start()) + 1
                last = Block(f"{page.name}:{line}", body, _print_claims(body))
                found.append(last)
            elif lang == "text" and before == OUTPUT:
                assert last is not None, f"{page.name}: an output block without a runnable python block above it"
                last.outputs.append(body)
    return [b for b in found if b.prints or b.outputs]


BLOCKS = claimed_blocks()


def claim_pattern(claim: str) -> re.Pattern[str]:
    """A regex for a claim: `...` -> any text, decimals -> any number (compared afterwards), the rest literal."""
    parts = []
    for piece in re.split(r"(\.\.\.|-?\d+\.\d+)", claim):
        if piece == "...":
            parts.append(".*?")
        elif DECIMAL.fullmatch(piece):
            parts.append(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def matches(claim: str, printed: str) -> bool:
    """Whether `printed` contains `claim` (see the module docstring for `...` and the number tolerance)."""
    shown = DECIMAL.findall(claim)
    for match in claim_pattern(" ".join(claim.split())).finditer(" ".join(printed.split())):
        values = [float(v) for v in match.groups()]
        if all(abs(v - float(s)) <= 10 ** -len(s.split(".")[1]) + 1e-12 for v, s in zip(values, shown)):
            return True
    return False


def instrument(block: Block) -> str:
    """The block with a marker printed before each claimed print, so its output can be found."""
    lines = block.code.splitlines()
    for number, (index, _) in enumerate(block.prints):
        indent = PRINT.match(lines[index]).group(1)  # type: ignore[union-attr]
        lines[index] = f"{indent}print({MARK.format(number)!r}, end=''); " + lines[index].lstrip()
    return "\n".join(lines) + "\n"


def run(code: str, tmp_path: Path) -> tuple[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PL_TRAINER_MAX_EPOCHS", None)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "core_only.py"), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def test_the_matcher_applies_the_stated_tolerance() -> None:
    assert matches(".../epoch=4-val_loss=0.41.ckpt", "/tmp/x/epoch=4-val_loss=0.42.ckpt")
    assert not matches(".../epoch=4-val_loss=0.41.ckpt", "/tmp/x/epoch=4-val_loss=0.63.ckpt")
    assert not matches(".../epoch=3-step=8.ckpt", "/tmp/x/epoch=4-step=8.ckpt")
    assert matches("tensor(0.4054)", "tensor(0.4055)")
    assert not matches("tensor(0.4054)", "tensor(0.4070)")
    assert matches("Best score: 0.900. Signaling", "x Best score: 0.900. Signaling Trainer")


def test_the_docs_make_claims() -> None:
    pages = {b.where.split(":")[0] for b in BLOCKS}
    assert {"index.md", "checkpointing.md", "callbacks.md"} <= pages
    assert sum(len(b.prints) for b in BLOCKS) >= 6
    assert sum(len(b.outputs) for b in BLOCKS) >= 1


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_what_the_docs_say_is_printed_is_printed(block: Block, tmp_path: Path) -> None:
    stdout, stderr = run(instrument(block), tmp_path)
    printed = dict(re.findall(r"@@claim(\d+)@@(.*)", stdout))
    for number, (index, claim) in enumerate(block.prints):
        line = printed.get(str(number))
        assert line is not None, f"{block.where}: line {index + 1} printed nothing"
        assert matches(claim, line), f"{block.where}, line {index + 1}: the docs say {claim!r}, it prints {line!r}"
    for output in block.outputs:
        for expected in (line for line in output.splitlines() if line.strip()):
            assert matches(expected, stdout + "\n" + stderr), f"{block.where}: {expected!r} is not printed"


def test_the_checkpointing_worked_example_leaves_the_files_it_names(tmp_path: Path) -> None:
    """docs/checkpointing.md: val_loss 0.5, 0.3, 0.4, 0.1, 0.2 over five epochs of two steps with save_top_k=2 leaves
    epoch=3-step=8.ckpt and epoch=4-step=10.ckpt, and best_model_score 0.1."""
    text = " ".join((DOCS / "checkpointing.md").read_text().split())
    assert "the folder ends with `epoch=3-step=8.ckpt` (0.1) and `epoch=4-step=10.ckpt` (0.2)" in text
    code = """
import os, torch
from torch.utils.data import DataLoader, TensorDataset
import fulgor as pl
from fulgor.callbacks import ModelCheckpoint
LOSSES = [0.5, 0.3, 0.4, 0.1, 0.2]
class M(pl.LightningModule):
    def __init__(self):
        super().__init__(); self.layer = torch.nn.Linear(2, 1)
    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(LOSSES[self.current_epoch]))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
data = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
checkpoint = ModelCheckpoint(dirpath="ckpts", monitor="val_loss", save_top_k=2)
trainer = pl.Trainer(max_epochs=5, callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                     num_sanity_val_steps=0)
trainer.fit(M(), data, data)
print(sorted(os.listdir("ckpts")), round(float(checkpoint.best_model_score), 4))
"""
    stdout, _ = run(code, tmp_path)
    assert "['epoch=3-step=8.ckpt', 'epoch=4-step=10.ckpt'] 0.1" in stdout
