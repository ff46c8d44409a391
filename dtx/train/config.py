"""The training recipes as plain settings: what `dtx finetune` and `dtx distill` do given no flags.

Kept apart from the training code (no torch import) so the CLI reads its defaults from here
and `dtx --help` stays instant; docs/training.md records the sweeps that chose each value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from dtx.errors import ConfigError
from dtx.task import Task

DEFAULT_MAX_LEN = {"qa": 256, "pair": 128}
# Hard negatives for QA (docs/training.md, "Training as deployed"): the teacher and the student both
# see this many other training paragraphs per question, drawn from BM25's top NEGATIVE_POOL.
NEGATIVES_PER_QUESTION = 0.5
NEGATIVE_POOL = 20
# Weight of the attention-score MSE. Scores are logits (magnitude ~10), their squared differences far
# larger than the hidden states': this weight keeps the term's share of the gradient beside the others'
# (measured by scripts/loss_shares.py, docs/training.md).
ATTENTION_WEIGHT = 0.05
# The text a teacher-scored augmentation copy varies (dtx.data.augment): what is new at test time for a
# reader is the paragraph, which a question-side copy never changes.
AUGMENT_SIDES = ("question", "passage", "both")
# Share of passages, in the hash band just above the dev ones (dtx.data.splits.training_split), that training
# also holds out and scores its epochs on: early stopping and the kept epoch are chosen on passages no
# reported figure is read on. Half the dev share: enough questions to rank a handful of epochs (Disfl-QA:
# 350 beside dev's 779), at 4.8% fewer training questions.
SELECT_PERCENT = 5


@dataclass
class FinetuneConfig:
    """The recipe: what `dtx finetune` does when given no flags (chosen in docs/training.md)."""

    epochs: int = 6  # at most; early stopping on the held-out passages usually ends sooner
    patience: int = 1  # epochs without a better dev score before stopping
    min_epochs: int = 3  # never stop before this many
    batch_size: int = 16
    lr: float = 2e-4  # peak AdamW learning rate (the teacher sweep in docs/training.md)
    warmup: float = 0.1  # share of all steps spent warming up; then linear decay to 0 at `epochs`
    max_len: int | None = None  # pair tokens (None: 256 for QA windows, 128 for pairs)
    doc_stride: int = 64  # QA: tokens shared by consecutive passage windows
    # QA: hard negatives per training question (other training paragraphs from BM25's top `negative_pool`,
    # one window each, labelled no answer): the reader learns to decline a retriever's wrong paragraphs
    negatives: float = NEGATIVES_PER_QUESTION
    negative_pool: int = NEGATIVE_POOL
    train_limit: int | None = None  # use the first N training pairs (after a seeded shuffle)
    dev_limit: int | None = 2000  # evaluate on at most N dev pairs
    dev_percent: int = 10
    # passages also held out, on which epochs are scored and the kept one chosen (dtx.data.splits; 0: on dev)
    select_percent: int = SELECT_PERCENT
    seed: int = 0
    bf16: bool | None = None  # bf16 autocast (None: where the device computes bf16 natively)
    save_every: float = 600.0  # seconds between mid-epoch checkpoints (a killed run loses at most this)
    weight_decay: float = 0.01  # AdamW's decoupled weight decay
    clip_norm: float = 1.0  # gradients are clipped to this global L2 norm before every step

    def check(self) -> None:
        check_schedule(self.epochs, self.warmup, self.min_epochs)
        check_split(self.dev_percent, self.select_percent)

    def for_task(self, task: str) -> "FinetuneConfig":
        """The config with task-dependent defaults filled in (what the report records)."""
        return replace(self, max_len=self.max_len or DEFAULT_MAX_LEN[task], negatives=self.negatives if task == Task.QA else 0.0)



@dataclass
class DistillConfig:
    """The student recipe: what `dtx distill` does when given no flags (chosen in docs/training.md)."""

    temperature: float = 2.0  # T of the soft targets (teacher and student)
    alpha: float = 0.5  # weight of CE with the labels; 1 - alpha goes to the KL term
    epochs: int = 5  # phase-2 passes; the best epoch on the held-out passages is kept
    patience: int = 1  # phase-2 epochs without a better dev score before stopping (once min_epochs have run)
    # the whole schedule by default: the learning rate decays to 0 at `epochs`, and the low-rate epochs are
    # where students gain most (Disfl-QA 2/4 4x: +3.3 F1 in epoch 4, after a run of small gains); stopping at
    # the first dip of a 779-question dev score ended every H200 cell with the rate at half its peak
    min_epochs: int = 5
    phase1_epochs: int = 1  # autoencoder passes (only with compression; 0 = phase 2 only)
    pca_init: bool = True  # start the compressor from the principal components of layer-N states
    batch_size: int = 16
    lr: float = 1e-4  # phase 2 (whole student), peak of warm-up + linear decay over `epochs`
    phase1_lr: float = 1e-3  # phase 1 (compressor/decompressor)
    warmup: float = 0.1  # share of a phase's steps spent warming up
    train_limit: int | None = None
    dev_limit: int | None = 1000
    dev_percent: int = 10
    select_percent: int = SELECT_PERCENT  # as for the teacher: epochs kept on passages no report reads
    labels_only: bool = False  # ablation: plain fine-tuning of the decoupled model (CE only, no teacher)
    # QA: hard negatives per training question, as for the teacher; the student learns the teacher's
    # (soft) start/end distributions on them, which is what it meets behind a retriever
    negatives: float = NEGATIVES_PER_QUESTION
    negative_pool: int = NEGATIVE_POOL
    # Teacher-scored copies per training example (dtx.data.augment: words swapped for embedding neighbours,
    # no gold label, the teacher's targets only). Off until measured (docs/training.md)
    augment: float = 0.0
    augment_side: str = "question"  # which text a copy varies (AUGMENT_SIDES); the passage's words at dtx.data.augment.PASSAGE_RATE
    hidden_weight: float = 0.5  # weight of each hidden-state MSE term (last layer, and the layer-wise ones when on)
    # the attention term compares the last layer's unnormalised scores QK^T/sqrt(d) ("scores", TinyBERT's
    # target) or its softmax probabilities ("probs": dtx's first recipe, whose term measured ~0 and moved nothing)
    attention_target: str = "scores"
    attention_weight: float = ATTENTION_WEIGHT
    cross_layers: bool = True  # MSE at every cross layer, not only the last (DeFormer's layer-wise supervision)
    input_layer: bool = True  # MSE of the state entering the cross layers against the teacher's after N layers
    seed: int = 0
    bf16: bool | None = None  # bf16 autocast (None: where the device computes bf16 natively)
    save_every: float = 600.0  # seconds between mid-epoch checkpoints
    weight_decay: float = 0.01  # AdamW's weight decay in phase 2 and QAT
    phase1_weight_decay: float = 0.0  # and in phase 1 (the compressor/decompressor autoencoder)
    clip_norm: float = 1.0  # gradients are clipped to this global L2 norm before every step, in every phase
    # Quantization-aware phase after phase 2 (docs/training.md, "INT8"): the KD loss with the MatMuls the INT8
    # engine quantizes computed as it computes them (dtx.train.fake_quant). Off by default, by measurement: one
    # epoch on the 2/4 4x Disfl-QA student took its INT8 engine from 41.73 to 41.30 F1, while plain dynamic INT8
    # was already 0.09 F1 from FP32 (docs/training.md, "QAT's F1").
    qat_epochs: int = 0
    qat_lr: float = 1e-5  # peak rate of the QAT phase: a tenth of phase 2's, a fine-tuning of a trained student
    qat_scheme: str = "per-channel-uint8"  # the INT8 scheme trained for (dtx.model.int8.SCHEMES), then built by `dtx build-engine --int8`

    def check(self) -> None:
        check_schedule(self.epochs, self.warmup, self.min_epochs)
        check_split(self.dev_percent, self.select_percent)
        if self.augment > 0 and self.labels_only:
            raise ConfigError("--augment copies carry no label, only the teacher's targets, and --labels-only trains without a teacher: drop one of them")
        if self.augment_side not in AUGMENT_SIDES:
            raise ConfigError(f"augment_side {self.augment_side!r} is not one of {', '.join(AUGMENT_SIDES)}: pick one of them")
        if self.qat_epochs:
            from dtx.model.int8 import Int8Scheme

            Int8Scheme.parse(self.qat_scheme)


def check_split(dev_percent: int, select_percent: int) -> None:
    """Refuse held-out shares that leave no passage to train on."""
    if dev_percent + select_percent >= 100:
        raise ConfigError(f"{dev_percent}% of passages held out and --select-percent {select_percent} leave none to train on: pass a --select-percent below {100 - dev_percent}")


def check_schedule(epochs: int, warmup: float, min_epochs: int) -> None:
    """Refuse a schedule whose warm-up outlasts the epochs early stopping must run.

    The warm-up is a share of all `epochs`' steps, but early stopping may end the run - and publish its
    best epoch - as soon as `min_epochs` have run: with `--epochs 100000` the learning rate would still be
    a few thousandths of --lr then, and the published model effectively untrained. So the warm-up must end
    within the first `min_epochs` epochs (warmup x epochs <= min_epochs); the linear decay after it may
    run as long as asked (a long --epochs then just means a slowly decaying rate).
    """
    if warmup * epochs <= min_epochs + 1e-9:
        return
    raise ConfigError(
        f"--warmup {warmup:g} of --epochs {epochs} is {warmup * epochs:g} epochs of warm-up, but early stopping may publish "
        f"a model after --min-epochs {min_epochs}, before the learning rate reached --lr: pass --epochs at most "
        f"{math.floor(min_epochs / warmup + 1e-9)}, a smaller --warmup, or --min-epochs {math.ceil(warmup * epochs - 1e-9)}"
    )


# What a run saved before a setting existed ran with, where that is not the setting's default today: such a
# run chose its epochs on the dev passages (no selection band), and resumes only as it began.
BEFORE_SETTING = {"select_percent": 0}


def same_settings(saved: dict | None, cfg) -> bool:
    """Whether a run saved with the settings `saved` (a dict of a config dataclass) was run with `cfg`'s: the one rule
    for resuming a run or reusing its result. A setting newer than the saved run counts as what such runs did
    (BEFORE_SETTING), else as its default."""
    defaults = asdict(type(cfg)())
    before = {k: v for k, v in BEFORE_SETTING.items() if k in defaults} if saved is not None else {}
    return {**defaults, **before, **(saved or {})} == asdict(cfg)
