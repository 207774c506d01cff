"""Train the CNN classifier whose features the offline evaluation uses."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.data.sources import DataError
from twostage.images import to_tensor
from twostage.models.classifier import Classifier
from twostage.runtime import pick_device, seed_everything
from twostage.train.common import InfiniteBatches, check_finite


@torch.no_grad()
def accuracy(model: Classifier, images, labels, device, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_tensor(images[start : start + batch_size], device))
        correct += int(
            (logits.argmax(1).cpu() == torch.from_numpy(labels[start : start + batch_size])).sum()
        )
    model.train()
    return correct / len(images)


def train_classifier(p: Params, dataset: str) -> dict:
    spec = p["evaluation"]["classifier"]
    device = pick_device(p["device"])
    gen = seed_everything(p["seed"])
    images, labels = load_split(dataset, "train")
    val_images, val_labels = load_split(dataset, "val")
    if labels.min() < 0:
        raise DataError(
            f"dataset {dataset!r} has unlabelled images; the classifier extractor needs labels "
            "(use class sub-folders or an npz 'labels' array)"
        )
    num_classes = int(labels.max()) + 1
    model = Classifier(images.shape[-1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    batches = InfiniteBatches(len(images), spec["batch_size"], gen)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    start = time.perf_counter()
    for step in tqdm(range(1, spec["steps"] + 1), desc=f"classifier {dataset}", mininterval=5):
        idx = batches.next_indices()
        x = to_tensor(x_all[idx].numpy(), device)
        # Small random shifts so features describe digits, not exact pixel positions.
        shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(x), y_all[idx].to(device))
        check_finite(step, loss=loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = paths.classifier(dataset)
    save_torch(
        out["model"],
        {
            "channels": images.shape[-1],
            "num_classes": num_classes,
            "state_dict": model.state_dict(),
        },
    )
    metrics = {
        "val_accuracy": accuracy(model, val_images, val_labels, device),
        "train_accuracy": accuracy(model, images, labels, device),
        "num_classes": num_classes,
        "train_time_s": time.perf_counter() - start,
    }
    write_json(out["metrics"], metrics)
    return metrics
