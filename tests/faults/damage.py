"""The damaged-input matrix: every artifact kind a stage reads × every kind of damage.

Each case damages one file of a small built project, runs the stage that reads it
through the CLI and gives the one error line it must print. ``README.md`` beside this
file holds the same matrix as a table (``python -m tests.faults.damage`` prints it;
test_damaged_inputs.py checks the two agree).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

PROFILE = "params/profiles/faults-test.yaml"
# A folder dataset of a few digits, a random-weights extractor: every stage that reads a
# damaged file gets to it in seconds.
PROFILE_TEXT = """\
datasets:
  mnist5k: {source: folder, path: data/digits, resolution: 32, channels: 1,
            val_fraction: 0.25, split_seed: 0}
evaluation:
  extractor: random-classifier-0
targets: [autoregressive]
"""
REBUILD = f"snakemake --cores 2 --configfile {PROFILE} --forcerun"
# Where an error line quotes a parser's own words, the table shows (…).
DETAIL = "(…)"


def made_by(stage: str, name: str) -> str:
    rule = stage.replace("-", "_")
    return f"made by `twostage --profile {PROFILE} {stage} {name}` (Snakemake rule {rule})"


def checksum_error(file: str, stage: str, name: str) -> str:
    sidecar = Path(file).name + ".sha256"
    return (
        f"{file}: content differs from the sha256 recorded when it was written ({sidecar}): "
        f"truncated, damaged or changed since; {made_by(stage, name)}; rebuild: {REBUILD} {file}"
    )


def parse_error(file: str, what: str, stage: str, name: str) -> str:
    return f"{file}: {what} {DETAIL}; {made_by(stage, name)}; rebuild: {REBUILD} {file}"


def shape_error(file: str, problem: str, stage: str, name: str) -> str:
    return f"{file}: {problem}; {made_by(stage, name)}; rebuild: {REBUILD} {file}"


# ---- damage: each takes the file and rewrites it -------------------------------------


def truncate(path: Path) -> None:
    """Cut to half its bytes; its checksum stays."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    """Seeded random bytes of the same length, and no checksum (a file copied in by hand)."""
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    Path(f"{path}.sha256").unlink(missing_ok=True)


def edit_npy(path: Path) -> None:
    """A valid array with one value changed, written behind the checksum's back."""
    array = np.load(path)
    array.flat[0] += 1
    np.save(path, array)


def edit_npz(path: Path) -> None:
    with np.load(path) as f:
        arrays = dict(f)
    arrays["images"].flat[0] += 1
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def edit_json(path: Path) -> None:
    data = json.loads(path.read_text())
    data["edited"] = True
    path.write_text(json.dumps(data))


def edit_checkpoint(path: Path) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    next(iter(ckpt["state_dict"].values())).add_(1)
    torch.save(ckpt, path)


def rewrite(writer: Callable[[Path], None]) -> Callable[[Path], None]:
    """Damage that goes through the project's own writer: the checksum matches."""
    return writer


def _save_npy(array: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from twostage.artifacts import save_npy

        save_npy(path, array)

    return write


def _save_npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from twostage.artifacts import save_npz

        save_npz(path, **arrays)

    return write


def _save_json(obj) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from twostage.artifacts import write_json

        write_json(path, obj)

    return write


def _checkpoint_without_state(path: Path) -> None:
    from twostage.artifacts import load_torch, save_torch

    ckpt = load_torch(path)
    ckpt["state_dict"] = {"unrelated.weight": ckpt["state_dict"][next(iter(ckpt["state_dict"]))]}
    save_torch(path, ckpt)


def _checkpoint_not_a_dict(path: Path) -> None:
    import torch

    from twostage.artifacts import save_torch

    save_torch(path, [torch.zeros(2)])


def _text(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text)

    return write


def _yaml_cut(path: Path) -> None:
    """Cut inside a flow mapping (the profile's dataset entry)."""
    text = path.read_text()
    path.write_text(text[: text.index("resolution")])


def _nan_image(path: Path) -> None:
    from PIL import Image

    pixels = np.full((32, 32), 0.5, dtype=np.float32)
    pixels[3, 4] = np.nan
    pixels[5, 6] = np.inf
    Image.fromarray(pixels, mode="F").save(path, format="TIFF")


def _png_of_size(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from PIL import Image

        Image.fromarray(np.zeros((size, size), dtype=np.uint8)).save(path)

    return write


@dataclass(frozen=True)
class Case:
    kind: str  # artifact kind
    damage: str  # what was done to it
    file: str  # the damaged file, relative to the project
    apply: Callable[[Path], None]
    command: tuple[str, ...]  # the stage that reads it
    expected: str  # the error line after "twostage: error: "

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.damage}".replace(" ", "_").replace("/", "_")


DATA = "results/data/mnist5k/train.npz"
MANIFEST = "results/data/mnist5k/manifest.json"
SAMPLES = "results/samples/autoregressive/images.npy"
FEATURES = "results/features/mnist5k-random-classifier-0/train.npy"
FEATURE_KEY = "results/features/mnist5k-random-classifier-0/key.json"
LATENTS = "results/latents/vq_mnist/train.npy"
MODEL = "results/autoencoders/vq_mnist/model.pt"
STORE_STATE = ".twostage-state/train_prior/autoregressive_mnist.pt"
IMAGE = "data/digits/3/zz.png"

TRAIN_CLASSIFIER = ("train-classifier", "mnist5k")
EXTRACT = ("extract-features", "mnist5k")
EVALUATE = ("evaluate", "autoregressive")
ENCODE = ("encode", "vq_mnist")
TRAIN_PRIOR = ("train-prior", "autoregressive_mnist")
PREPARE = ("prepare-data", "mnist5k")
VALIDATE = ("validate",)


def _uint8(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint8)


CASES: list[Case] = [
    # dataset splits (.npz), read by every stage that uses the images
    Case(
        "dataset split .npz",
        "truncated",
        DATA,
        truncate,
        TRAIN_CLASSIFIER,
        checksum_error(DATA, "prepare-data", "mnist5k"),
    ),
    Case(
        "dataset split .npz",
        "garbage",
        DATA,
        garbage,
        TRAIN_CLASSIFIER,
        parse_error(
            DATA, "not a readable .npz archive, truncated or damaged?", "prepare-data", "mnist5k"
        ),
    ),
    Case(
        "dataset split .npz",
        "changed",
        DATA,
        edit_npz,
        TRAIN_CLASSIFIER,
        checksum_error(DATA, "prepare-data", "mnist5k"),
    ),
    Case(
        "dataset split .npz",
        "wrong dtype",
        DATA,
        _save_npz(images=np.zeros((6, 32, 32, 1), np.float32), labels=np.zeros(6, np.int64)),
        TRAIN_CLASSIFIER,
        shape_error(
            DATA,
            "'images' is a float32 array of shape (6, 32, 32, 1), expected unsigned integer values",
            "prepare-data",
            "mnist5k",
        ),
    ),
    Case(
        "dataset split .npz",
        "wrong shape",
        DATA,
        _save_npz(images=_uint8(6, 32, 32), labels=np.zeros(6, np.int64)),
        TRAIN_CLASSIFIER,
        shape_error(
            DATA,
            "'images' is a uint8 array of shape (6, 32, 32), expected 4 dimensions",
            "prepare-data",
            "mnist5k",
        ),
    ),
    Case(
        "dataset split .npz",
        "missing array",
        DATA,
        _save_npz(images=_uint8(6, 32, 32, 1)),
        TRAIN_CLASSIFIER,
        shape_error(DATA, "no array named 'labels' (found: images)", "prepare-data", "mnist5k"),
    ),
    # the dataset manifest (JSON), read to key the cached features
    Case(
        "manifest JSON",
        "truncated",
        MANIFEST,
        truncate,
        EXTRACT,
        checksum_error(MANIFEST, "prepare-data", "mnist5k"),
    ),
    Case(
        "manifest JSON",
        "garbage",
        MANIFEST,
        garbage,
        EXTRACT,
        parse_error(MANIFEST, "not valid JSON, truncated or damaged?", "prepare-data", "mnist5k"),
    ),
    Case(
        "manifest JSON",
        "changed",
        MANIFEST,
        edit_json,
        EXTRACT,
        checksum_error(MANIFEST, "prepare-data", "mnist5k"),
    ),
    Case(
        "manifest JSON",
        "wrong type",
        MANIFEST,
        _save_json([1, 2]),
        EXTRACT,
        shape_error(MANIFEST, "holds a JSON list, expected an object", "prepare-data", "mnist5k"),
    ),
    Case(
        "manifest JSON",
        "missing entry",
        MANIFEST,
        _save_json({"dataset": "mnist5k"}),
        EXTRACT,
        shape_error(MANIFEST, "has no 'sha256' entry", "prepare-data", "mnist5k"),
    ),
    # generated samples (.npy), read by evaluation and nearest neighbours
    Case(
        "samples .npy",
        "truncated",
        SAMPLES,
        truncate,
        EVALUATE,
        checksum_error(SAMPLES, "sample", "autoregressive"),
    ),
    Case(
        "samples .npy",
        "garbage",
        SAMPLES,
        garbage,
        EVALUATE,
        parse_error(
            SAMPLES, "not a readable .npy array, truncated or damaged?", "sample", "autoregressive"
        ),
    ),
    Case(
        "samples .npy",
        "changed",
        SAMPLES,
        edit_npy,
        EVALUATE,
        checksum_error(SAMPLES, "sample", "autoregressive"),
    ),
    Case(
        "samples .npy",
        "wrong dtype",
        SAMPLES,
        _save_npy(np.zeros((4, 32, 32, 1), np.float64)),
        EVALUATE,
        shape_error(
            SAMPLES,
            "holds a float64 array of shape (4, 32, 32, 1), expected unsigned integer values",
            "sample",
            "autoregressive",
        ),
    ),
    Case(
        "samples .npy",
        "wrong shape",
        SAMPLES,
        _save_npy(_uint8(4, 32, 32)),
        EVALUATE,
        shape_error(
            SAMPLES,
            "holds a uint8 array of shape (4, 32, 32), expected 4 dimensions",
            "sample",
            "autoregressive",
        ),
    ),
    # cached real features (.npy) and their key (JSON)
    Case(
        "cached features .npy",
        "truncated",
        FEATURES,
        truncate,
        EVALUATE,
        checksum_error(FEATURES, "extract-features", "mnist5k"),
    ),
    Case(
        "cached features .npy",
        "garbage",
        FEATURES,
        garbage,
        EVALUATE,
        parse_error(
            FEATURES,
            "not a readable .npy array, truncated or damaged?",
            "extract-features",
            "mnist5k",
        ),
    ),
    Case(
        "cached features .npy",
        "changed",
        FEATURES,
        edit_npy,
        EVALUATE,
        checksum_error(FEATURES, "extract-features", "mnist5k"),
    ),
    Case(
        "cached features .npy",
        "wrong shape/dtype",
        FEATURES,
        _save_npy(np.zeros(6, np.int64)),
        EVALUATE,
        shape_error(
            FEATURES,
            "holds a int64 array of shape (6,), expected 2 dimensions, floating values",
            "extract-features",
            "mnist5k",
        ),
    ),
    Case(
        "cached features key JSON",
        "garbage",
        FEATURE_KEY,
        garbage,
        EVALUATE,
        parse_error(
            FEATURE_KEY, "not valid JSON, truncated or damaged?", "extract-features", "mnist5k"
        ),
    ),
    Case(
        "cached features key JSON",
        "changed",
        FEATURE_KEY,
        edit_json,
        EVALUATE,
        checksum_error(FEATURE_KEY, "extract-features", "mnist5k"),
    ),
    # token grids (.npy), read by the prior's training
    Case(
        "latents .npy",
        "truncated",
        LATENTS,
        truncate,
        TRAIN_PRIOR,
        checksum_error(LATENTS, "encode", "vq_mnist"),
    ),
    Case(
        "latents .npy",
        "garbage",
        LATENTS,
        garbage,
        TRAIN_PRIOR,
        parse_error(
            LATENTS, "not a readable .npy array, truncated or damaged?", "encode", "vq_mnist"
        ),
    ),
    Case(
        "latents .npy",
        "changed",
        LATENTS,
        edit_npy,
        TRAIN_PRIOR,
        checksum_error(LATENTS, "encode", "vq_mnist"),
    ),
    Case(
        "latents .npy",
        "wrong dtype",
        LATENTS,
        _save_npy(np.zeros((6, 4, 4), np.float32)),
        TRAIN_PRIOR,
        shape_error(
            LATENTS,
            "holds a float32 array of shape (6, 4, 4), expected integer or unsigned integer values",
            "encode",
            "vq_mnist",
        ),
    ),
    # a trained model (model.pt)
    Case(
        "model.pt",
        "truncated",
        MODEL,
        truncate,
        ENCODE,
        checksum_error(MODEL, "train-autoencoder", "vq_mnist"),
    ),
    Case(
        "model.pt",
        "garbage",
        MODEL,
        garbage,
        ENCODE,
        parse_error(
            MODEL, "cannot load checkpoint, truncated or damaged?", "train-autoencoder", "vq_mnist"
        ),
    ),
    Case(
        "model.pt",
        "changed",
        MODEL,
        edit_checkpoint,
        ENCODE,
        checksum_error(MODEL, "train-autoencoder", "vq_mnist"),
    ),
    Case(
        "model.pt",
        "wrong tensors",
        MODEL,
        _checkpoint_without_state,
        ENCODE,
        parse_error(
            MODEL, "checkpoint does not hold what its stage writes", "train-autoencoder", "vq_mnist"
        ),
    ),
    Case(
        "model.pt",
        "wrong type",
        MODEL,
        _checkpoint_not_a_dict,
        ENCODE,
        parse_error(
            MODEL, "checkpoint does not hold what its stage writes", "train-autoencoder", "vq_mnist"
        ),
    ),
    # params YAML: the file and position, no rebuild (the user's own file)
    Case(
        "params YAML",
        "truncated",
        PROFILE,
        _yaml_cut,
        VALIDATE,
        f"{PROFILE}:2:48: not valid YAML: while parsing a flow node, "
        "expected the node content, but found '<stream end>'",
    ),
    Case(
        "params YAML",
        "garbage",
        "params/priors.yaml",
        _text("priors: [\x00\x01"),
        VALIDATE,
        "params/priors.yaml:1:10: not valid YAML: unacceptable character #x0000: "
        "special characters are not allowed",
    ),
    Case(
        "params YAML",
        "malformed",
        "params/priors.yaml",
        _text("priors:\n  a: 1\n b: 2\n"),
        VALIDATE,
        "params/priors.yaml:3:2: not valid YAML: while parsing a block mapping, "
        "expected <block end>, but found '<block mapping start>'",
    ),
    Case(
        "params YAML",
        "wrong type",
        "params/priors.yaml",
        _text("- priors\n"),
        VALIDATE,
        "params/priors.yaml: top level must be a mapping, got list",
    ),
    # image folders: the user's data, refused at data preparation
    Case(
        "image folder",
        "truncated",
        IMAGE,
        truncate,
        PREPARE,
        f"{IMAGE}: unreadable or corrupt image {DETAIL}",
    ),
    Case(
        "image folder",
        "garbage",
        IMAGE,
        garbage,
        PREPARE,
        f"{IMAGE}: unreadable or corrupt image {DETAIL}",
    ),
    Case(
        "image folder",
        "wrong size",
        IMAGE,
        _png_of_size(28),
        PREPARE,
        f"{IMAGE}: image is 28×28 but the dataset resolution is 32 (resize the folder first; "
        "no resize rule is applied)",
    ),
    Case(
        "image folder",
        "NaN/inf pixels",
        IMAGE,
        _nan_image,
        PREPARE,
        f"{IMAGE}: 2 NaN or infinite pixel values; images must be finite",
    ),
]


def table(cases: list[Case] = CASES) -> str:
    """The matrix as a Markdown table (README.md)."""
    rows = ["| artifact | damage | read by | error line (after `twostage: error: `) |"]
    rows.append("|---|---|---|---|")
    for c in cases:
        message = c.expected.replace("|", "\\|")
        rows.append(f"| {c.kind} | {c.damage} | `twostage {' '.join(c.command)}` | {message} |")
    return "\n".join(rows) + "\n"


def build_project(root: Path, repo: Path) -> None:
    """A project where every artifact of the matrix exists, valid, with its checksum.

    Runs in ``root`` as the working directory (the caller's chdir).
    """
    import torch
    from PIL import Image

    from twostage import cli
    from twostage.artifacts import save_npy, save_torch
    from twostage.config import load_params
    from twostage.models.autoencoders.vq import VQAutoencoder

    shutil.copytree(repo / "params", root / "params")
    (root / PROFILE).write_text(PROFILE_TEXT)
    rng = np.random.default_rng(0)
    for i in range(8):
        digit = root / "data/digits" / str(i % 4) / ("zz.png" if i == 7 else f"{i}.png")
        digit.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(digit)
    for stage in (PREPARE, EXTRACT):
        assert cli.main(["--profile", PROFILE, *stage]) == 0, stage
    p = load_params([PROFILE])
    spec = p.autoencoder("vq_mnist")
    torch.manual_seed(0)
    model = VQAutoencoder(spec, channels=1, resolution=32)
    save_torch(
        root / MODEL,
        {"spec": spec, "channels": 1, "resolution": 32, "state_dict": model.state_dict()},
    )
    save_npy(root / SAMPLES, rng.integers(0, 256, (4, 32, 32, 1), dtype=np.uint8))
    for split in ("train", "val"):
        save_npy(root / f"results/latents/vq_mnist/{split}.npy", np.zeros((6, 4, 4), np.int16))
    yaml.safe_load((root / PROFILE).read_text())  # the profile itself parses


if __name__ == "__main__":
    print(table(), end="")
