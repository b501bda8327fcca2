"""Magnitude pruning of the conv layers with tensorflow-model-optimization (Keras 2 only):
a polynomial-decay schedule to the target sparsity while fine-tuning on LoL crops, then
strip_pruning. Only Conv2D / Conv2DTranspose layers are wrapped: TFMOT cannot wrap PReLU or
the Lambda layers, and they hold few weights.

What it buys, stated plainly: unstructured zeros do not make the flatbuffer smaller (int8
weights are stored densely) and do not make TFLM's kernels do less work; they make the model
compress better (gzip), which is what the report shows."""
from __future__ import annotations

import gzip
from dataclasses import replace

import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from tinymirnet.model.metrics import LOSSES

PRUNABLE = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def prunable_clone(model, sparsity: float, end_step: int):
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=max(1, end_step),
        frequency=max(1, end_step // 20))

    def wrap(layer):
        # A fresh layer in both cases: wrapping `layer` itself would share its variables with
        # the float model, and fine-tuning the clone would silently change the float model.
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, PRUNABLE):
            return tfmot.sparsity.keras.prune_low_magnitude(fresh, pruning_schedule=schedule)
        return fresh

    clone = keras.models.clone_model(model, clone_function=wrap)
    # clone_model builds fresh layers: copy the trained weights across, layer by layer.
    for src, dst in zip(model.layers, clone.layers):
        if isinstance(src, PRUNABLE):
            dst.layer.set_weights(src.get_weights())
        elif src.weights:
            dst.set_weights(src.get_weights())
    return clone


def centre_loss(margin: int, loss: str = "charbonnier"):
    """The training loss (metrics.LOSSES) on the centre of each crop only: with margin = halo,
    the pixels the board keeps from a tile (the objective the tile-adapted weights were
    trained with)."""
    base = LOSSES[loss]
    if not margin:
        return base

    def centre(y_true, y_pred):
        return base(y_true[:, margin:-margin, margin:-margin], y_pred[:, margin:-margin, margin:-margin])
    return centre


class RampThenCosine(keras.optimizers.schedules.LearningRateSchedule):
    """`lr` while the sparsity ramps up (the first `ramp` steps), then a cosine decay to
    `min_lr` over the recovery steps at the final sparsity."""

    def __init__(self, lr: float, ramp: int, total: int, min_lr: float = 1e-5):
        self.lr, self.ramp, self.total, self.min_lr = lr, ramp, total, min_lr

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        t = tf.clip_by_value((step - self.ramp) / max(1, self.total - self.ramp), 0.0, 1.0)
        decayed = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + tf.cos(np.pi * t))
        return tf.where(step < self.ramp, tf.constant(self.lr, tf.float32), decayed)

    def get_config(self):
        return {"lr": self.lr, "ramp": self.ramp, "total": self.total, "min_lr": self.min_lr}


SCHEDULES = ("constant", "cosine")


def distilled(dataset, teacher):
    """`dataset` with each batch's targets replaced by `teacher`'s outputs on its inputs."""
    return dataset.map(lambda x, y: (x, teacher(x, training=False)))


def prune(model, dataset, steps: int, sparsity: float = 0.5, lr: float = 1e-3, margin: int = 0,
          loss: str = "charbonnier", trainer=None, schedule: str = "constant"):
    """Fine-tunes `model` for `steps` batches of `dataset` while pruning its convolutions to
    `sparsity`; returns the stripped (plain Keras) model. `model` itself is left unchanged.
    `schedule`: "constant" (`lr` throughout) or "cosine" (`lr` while the sparsity ramps up,
    then decayed to 1e-5 while the network recovers at the final sparsity).

    The rate, measured on the validation split (stage-3 weights, tiled PSNR of the pruned
    float model against the unpruned one, 1,200 steps unless said): a constant 1e-3 lost
    0.13 dB, 2e-3 0.16 dB, 3e-4 0.42 dB, 1e-4 cosine-decayed 0.71 dB; 1e-3 for 2,400 steps
    0.32 dB. For the frame-context weights (49 validation pairs, 20.65 dB tiled unpruned):
    a constant 1e-3 lost 0.15 dB, 1e-3 then cosine over the recovery half gained 0.10 dB,
    hence the default schedule; the cosine schedule towards the unpruned model's outputs
    (`distilled` targets) lost 0.19 dB (ad hoc runs, not a committed report).

    `trainer(clone)`, when given, builds the model the loss is computed on from the clone's
    layers (a frame-context network: thumbnail + tile -> tile); `dataset` feeds that model.
    With `distilled(dataset, unpruned)` targets the fine-tune keeps what the network computes
    (its exposure decisions included) rather than re-fitting it on a few crops."""
    # Sparsity ramps up over the first half; the second half recovers at the final sparsity.
    if schedule not in SCHEDULES:
        raise ValueError(f"pruning schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    ramp = int(steps * 0.5)
    pruned = prunable_clone(model, sparsity, end_step=ramp)
    fitted = trainer(pruned) if trainer else pruned
    rate = lr if schedule == "constant" else RampThenCosine(lr, ramp, steps)
    fitted.compile(optimizer=keras.optimizers.Adam(rate), loss=centre_loss(margin, loss))
    fitted.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=2,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(pruned)


def _keep(scores: np.ndarray, fraction: float, minimum: int = 2) -> np.ndarray:
    """Indices (ascending) of the filters kept when the `fraction` with the lowest scores go."""
    n = len(scores)
    keep = max(minimum, n - int(round(n * fraction)))
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


def prune_filters(model, cfg, fraction: float):
    """Structured pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017):
    removes the `fraction` of whole filters with the smallest L1 norm and returns a narrower
    model (fewer MACs, a smaller flatbuffer, fewer instructions on the board) with the kept
    weights, and its config. Fine-tuning afterwards recovers what the filters did.

    "mrb_half_resolution" (the tiny MIRNet): each DAU's inner width, the filters of its first
    3x3 convolution, which take the second convolution's input slice with them; the streams'
    widths are tied by their residual connections and stay. "half_resolution": the stride-2
    convolution and every block; a block's filter takes its channel-attention excite row and
    the next layer's input slice with it; the attention squeeze (once per frame) and the
    16-channel head keep their widths."""
    if cfg.design == "mrb_half_resolution":
        return _prune_dau_filters(model, cfg, fraction)
    if cfg.design != "half_resolution":
        raise ValueError(f"structured pruning knows the mrb_half_resolution and half_resolution designs, "
                         f"not {cfg.design!r}")
    w = _weights_by_layer(model)
    names = ["down"] + [f"block{k}_conv" for k in range(cfg.depth)]
    kept = [_keep(np.abs(w[n][0]).sum(axis=(0, 1, 2)), fraction) for n in names]
    new, prev = {}, np.arange(3)
    for n, k in zip(names, kept):
        new[n] = [w[n][0][:, :, prev][..., k], w[n][1][k]]
        prev = k
    for b, k in enumerate(kept[1:]):
        sq, ex = f"block{b}_ca_squeeze", f"block{b}_ca_excite"
        new[sq] = [w[sq][0][:, :, k], w[sq][1]]
        new[ex] = [w[ex][0][..., k], w[ex][1][k]]
    new["head"] = [w["head"][0][:, :, prev], w["head"][1]]
    squeeze = w["block0_ca_squeeze"][0].shape[-1] if cfg.depth else 0
    return _narrow_model(replace(cfg, half_widths=tuple(len(k) for k in kept), squeeze=squeeze), new, w)


def _weights_by_layer(model) -> dict:
    return {layer.name: [v.numpy() for v in layer.weights] for layer in model.layers if layer.weights}


def _prune_dau_filters(model, cfg, fraction: float):
    w = _weights_by_layer(model)
    new = dict(w)
    widths = []
    for r in range(cfg.mrb_rounds):
        for stream in ("top", "mid", "bot"):
            a, b = f"round{r}_dau_{stream}_conv_a", f"round{r}_dau_{stream}_conv_b"
            k = _keep(np.abs(w[a][0]).sum(axis=(0, 1, 2)), fraction)
            new[a] = [w[a][0][..., k], w[a][1][k]]
            new[b] = [w[b][0][:, :, k], w[b][1]]
            widths.append(len(k))
    return _narrow_model(replace(cfg, dau_widths=tuple(widths)), new, w)


def _narrow_model(narrow_cfg, new: dict, old: dict):
    from tinymirnet.model.network import build_mirnet
    if set(new) != set(old):
        raise ValueError(f"structured pruning does not know the layers {sorted(set(old) - set(new))}")
    narrow = build_mirnet(narrow_cfg)
    for layer in narrow.layers:
        if layer.weights:
            layer.set_weights(new[layer.name])
    return narrow, narrow_cfg


def fit(fitted, dataset, steps: int, rate, loss_fn, scenes=None, scene_weight: float = 0.0, log=print) -> None:
    """`steps` batches of `dataset` through `fitted` with Adam at `rate`. With `scenes` (batches
    of ((thumbnail, prepared crop), raw crop) of real photos, data.scene_crop_dataset) each step
    also adds scene_weight x metrics.scene_loss, as training does: a fine-tune towards LoL's
    ground truth alone would undo what the weights learnt about real scenes. Towards the unpruned
    network's outputs (`distilled`) it does harm: on the tiny MIRNet (1/8 pruned, 3,000 steps)
    x 0.1 left the int8 network 30.2 dB from its float twin on a SICE night scene and 19.97 dB
    on the validation split; without it 41.9 dB and 20.10 dB (the decision page's pruning table,
    docs/decisions/2026-12-06-tiny-mirnet-on-the-board.md)."""
    if scenes is None:
        fitted.compile(optimizer=keras.optimizers.Adam(rate), loss=loss_fn)
        fitted.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=2)
        return
    from tinymirnet.model.metrics import scene_loss
    optimizer = keras.optimizers.Adam(rate)

    @tf.function
    def step(x, y, scene_in, scene_raw):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, fitted(x, training=True))
            natural = scene_loss(scene_raw, fitted(scene_in, training=True))
            total = loss + scene_weight * natural
        grads = tape.gradient(total, fitted.trainable_variables)
        optimizer.apply_gradients(zip(grads, fitted.trainable_variables))
        return loss, natural

    losses, naturals = [], []
    for (x, y), (scene_in, scene_raw) in tf.data.Dataset.zip((dataset, scenes)).take(steps):
        loss, natural = step(x, y, scene_in, scene_raw)
        losses.append(float(loss))
        naturals.append(float(natural))
    log(f"  {steps} steps: loss {np.mean(losses):.5f}, scene loss {np.mean(naturals):.5f} (x {scene_weight:g})")


def finetune(model, dataset, steps: int, lr: float = 1e-3, margin: int = 0, loss: str = "charbonnier",
             trainer=None, schedule: str = "cosine", scenes=None, scene_weight: float = 0.0, log=print):
    """Fine-tunes `model` in place for `steps` batches of `dataset` (after structured pruning);
    `trainer(model)` builds the model the loss is computed on (a frame-context network). The
    "cosine" schedule keeps `lr` for the first half, then decays it (RampThenCosine). `scenes`,
    `scene_weight`: the naturalness loss on real photos beside it (`fit`)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"fine-tune schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    fitted = trainer(model) if trainer else model
    rate = lr if schedule == "constant" else RampThenCosine(lr, int(steps * 0.5), steps)
    fit(fitted, dataset, steps, rate, centre_loss(margin, loss), scenes, scene_weight, log)
    return model


def sparsity_report(model) -> dict:
    """Fraction of exact zeros per conv kernel and overall (over conv kernels)."""
    layers, zeros, total = {}, 0, 0
    for layer in model.layers:
        if isinstance(layer, PRUNABLE):
            k = layer.kernel.numpy()
            z = int(np.sum(k == 0))
            layers[layer.name] = round(z / k.size, 4)
            zeros += z
            total += k.size
    return {"overall": round(zeros / max(1, total), 4), "conv_weights": total, "per_layer": layers}


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))
