"""Seed notes, section 3 "Use pretrained models": the BertMNLIFinetuner, with a frozen pretrained backbone.

A small `nn.TransformerEncoder` stands in for BERT: it is "pretrained" here (a few steps of token reconstruction),
saved, loaded with `TinyBert.from_pretrained(...)`, frozen with `freeze()`, and a new linear head is trained on a
3-class sentence-pair task. The notes ask where the loss goes when `forward` returns logits: `forward` is inference
(logits, attention), and `training_step` computes the loss from those logits and returns it. No extra hook needed.
Run: `python examples/s3_pretrained_finetune.py [--root DIR]` (default: a new temp directory).
"""

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl

VOCAB, SEQ, CLS, SEP = 16, 8, 0, 1  # [CLS] a a a [SEP] b b b


class TinyBert(pl.LightningModule):
    """The BERT stand-in: token + segment + position embeddings and a 2-layer transformer encoder.

    `forward` returns `(hidden_states, pooled, attention)` like `BertModel(output_attentions=True)`.
    """

    def __init__(self, hidden_size=32, layers=2, output_attentions=False):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden_size, num_hidden_layers=layers)
        self.output_attentions = output_attentions
        self.tokens = nn.Embedding(VOCAB, hidden_size)
        self.segments = nn.Embedding(2, hidden_size)
        self.positions = nn.Parameter(torch.randn(SEQ, hidden_size) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden_size, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.lm_head = nn.Linear(hidden_size, VOCAB)  # used by the pretraining objective only

    @classmethod
    def from_pretrained(cls, path, output_attentions=False):
        state = torch.load(path, weights_only=True)
        model = cls(output_attentions=output_attentions)
        model.load_state_dict(state)
        return model

    def forward(self, input_ids, attention_mask, token_type_ids):
        x = self.tokens(input_ids) + self.segments(token_type_ids) + self.positions
        padding = attention_mask == 0
        for layer in self.encoder.layers[:-1]:
            x = layer(x, src_key_padding_mask=padding)
        last = self.encoder.layers[-1]
        attn = None
        if self.output_attentions:
            _, attn = last.self_attn(x, x, x, key_padding_mask=padding, need_weights=True)
        h = last(x, src_key_padding_mask=padding)
        return h, h[:, 0], attn

    # "Pretraining": reconstruct every token from the encoder's output.
    def training_step(self, batch, batch_idx):
        input_ids, attention_mask, token_type_ids, _ = batch
        h, _, _ = self(input_ids, attention_mask, token_type_ids)
        return F.cross_entropy(self.lm_head(h).flatten(0, 1), input_ids.flatten())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


class BertMNLIFinetuner(pl.LightningModule):
    def __init__(self, pretrained_path):
        super().__init__()
        self.bert = TinyBert.from_pretrained(pretrained_path, output_attentions=True)
        self.bert.freeze()  # the notes: freeze the pretrained model (requires_grad=False and eval mode)
        self.W = nn.Linear(self.bert.config.hidden_size, 3)
        self.num_classes = 3

    def forward(self, input_ids, attention_mask, token_type_ids):
        h, _, attn = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        h_cls = h[:, 0]
        logits = self.W(h_cls)
        return logits, attn

    # The answer to the notes' question: forward returns logits; the loss is computed here, from them.
    def training_step(self, batch, batch_idx):
        input_ids, attention_mask, token_type_ids, label = batch
        logits, _ = self(input_ids, attention_mask, token_type_ids)
        loss = F.cross_entropy(logits, label)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.W.parameters(), lr=1e-2)  # only the new head trains


def pairs(n, seed):
    """[CLS] a1 a2 a3 [SEP] b1 b2 b3; label: 0 if sum(a) < sum(b), 1 if equal, 2 if greater."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(2, VOCAB, (n, 3), generator=g)
    b = torch.randint(2, VOCAB, (n, 3), generator=g)
    input_ids = torch.cat([torch.full((n, 1), CLS), a, torch.full((n, 1), SEP), b], dim=1)
    token_type_ids = torch.cat([torch.zeros(n, 5, dtype=torch.long), torch.ones(n, 3, dtype=torch.long)], dim=1)
    diff = a.sum(1) - b.sum(1)
    label = (diff > 0).long() * 2 + (diff == 0).long()
    return TensorDataset(input_ids, torch.ones(n, SEQ, dtype=torch.long), token_type_ids, label)


def evaluate(model, dataset):
    input_ids, attention_mask, token_type_ids, label = dataset.tensors
    with torch.no_grad():
        logits, attn = model(input_ids, attention_mask, token_type_ids)
    return F.cross_entropy(logits, label).item(), (logits.argmax(1) == label).float().mean().item(), attn


if __name__ == "__main__":
    from _digits import enter_root

    enter_root(__doc__)
    pl.seed_everything(0)
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}

    # 1. "Pretrain" the backbone and save it, as a hub would have.
    bert = TinyBert()
    pl.Trainer(max_steps=40, enable_checkpointing=False, **quiet).fit(bert, DataLoader(pairs(512, 0), batch_size=32))
    torch.save(bert.state_dict(), "tiny-bert.pt")
    print(f"pretrained backbone saved: tiny-bert.pt ({sum(p.numel() for p in bert.parameters())} parameters)")

    # 2. Fine-tune: load, freeze, train the new head.
    model = BertMNLIFinetuner("tiny-bert.pt")
    backbone_before = {k: v.clone() for k, v in model.bert.state_dict().items()}
    head_before = model.W.weight.clone()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters after freeze(): {trainable} (the head), backbone training mode: {model.bert.training}")
    test = pairs(256, 2)
    loss, acc, attn = evaluate(model, test)
    print(f"before fine-tuning: loss {loss:.4f}, accuracy {acc:.3f}")

    trainer = pl.Trainer(max_epochs=8, enable_checkpointing=False, **quiet)
    trainer.fit(model, DataLoader(pairs(1024, 1), batch_size=64, shuffle=True))

    loss, acc, attn = evaluate(model, test)
    print(f"after fine-tuning: loss {loss:.4f}, accuracy {acc:.3f}, attention {tuple(attn.shape)}")
    unchanged = all(torch.equal(v, backbone_before[k]) for k, v in model.bert.state_dict().items())
    print(f"backbone weights unchanged: {unchanged}")
    print(f"head weights changed: {not torch.equal(model.W.weight, head_before)}")
    print(f"global_step: {trainer.global_step}")
