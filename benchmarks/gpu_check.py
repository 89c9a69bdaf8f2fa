"""GPU check for a lent CUDA machine: W3 (the seed's autoencoder, 60,000x784 random data, batch 64, one epoch
plus validation with self.log) timed for a raw PyTorch loop, fulgor and (when installed) pytorch-lightning, in
the same process, interleaved; prints a markdown table of medians and ratios vs raw and the final losses.

Run: PYTHONPATH=src python benchmarks/gpu_check.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N_TRAIN, N_VAL, BATCH = 60_000, 10_000, 64


def make_nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))
    decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))
    return encoder, decoder


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(1)
    train = TensorDataset(torch.rand(N_TRAIN, 784, generator=g), torch.zeros(N_TRAIN))
    val = TensorDataset(torch.rand(N_VAL, 784, generator=g), torch.zeros(N_VAL))
    return DataLoader(train, batch_size=BATCH), DataLoader(val, batch_size=BATCH)


def run_raw() -> tuple[float, float]:
    device = torch.device("cuda")
    encoder, decoder = make_nets()
    encoder, decoder = encoder.to(device), decoder.to(device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    train, val = loaders()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for x, _ in train:
        x = x.to(device, non_blocking=True)
        loss = F.mse_loss(decoder(encoder(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for x, _ in val:
            x = x.to(device, non_blocking=True)
            total += F.mse_loss(decoder(encoder(x)), x) * x.size(0)
    val_loss = (total / N_VAL).item()
    torch.cuda.synchronize()
    return time.perf_counter() - start, val_loss


def lit_module(pl: object) -> object:
    class LitAutoEncoder(pl.LightningModule):  # type: ignore[attr-defined, misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = make_nets()

        def training_step(self, batch, batch_idx):
            x, _ = batch
            loss = F.mse_loss(self.decoder(self.encoder(x)), x)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, _ = batch
            self.log("val_loss", F.mse_loss(self.decoder(self.encoder(x)), x))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return LitAutoEncoder()


def run_framework(pl: object) -> tuple[float, float]:
    model = lit_module(pl)
    train, val = loaders()
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(  # type: ignore[attr-defined]
            accelerator="gpu",
            devices=1,
            max_epochs=1,
            default_root_dir=root,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            enable_progress_bar=False,
        )
        torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.fit(model, train, val)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return elapsed, float(trainer.callback_metrics["val_loss"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import fulgor

    runners = {"raw": run_raw, "fulgor": lambda: run_framework(fulgor)}
    try:
        import pytorch_lightning

        runners["pytorch-lightning"] = lambda: run_framework(pytorch_lightning)
    except ImportError:
        pass
    for run in runners.values():  # warm-up (CUDA context, kernels, allocator)
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    losses: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, run in runners.items():
            elapsed, loss = run()
            times[name].append(elapsed)
            losses[name] = loss
    raw = statistics.median(times["raw"])
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| runner | median s (W3, 1 epoch + val) | ratio vs raw | final val_loss |")
    print("|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / raw:.3f} | {losses[name]:.6f} |")


if __name__ == "__main__":
    main()
