"""Fine-tuning an exported model: what `sora-ros train --init MODEL_DIR` starts from, and what
carries over to the child when the user's robot differs from the parent's.

What carries over (`start_from`):
  - the VAE, its latent scale included (never recalibrated: the DiT was trained on those latents);
  - the whole DiT;
  - the anchored decoder, stored in the training checkpoint and exported with the child unchanged
    (`carried_anchor`); with the VAE frozen its inputs mean what they meant, and
    `sora-ros train-anchor --init PARENT` adapts it to the new footage either way.
What an action spec other than the parent's changes (`adapt_actions`):
  - other offset/scale (another robot's cmd_vel limits): nothing restarts; the network keeps
    seeing (action - offset) / scale, so give the new robot's limits the normalised range the
    parent was trained on (e.g. scale = its top speed where the parent's was 0.5 m/s);
  - other action names (another layout): the first layer of the action embedding keeps the
    columns of the names both share and starts the new names' columns at zero (the model starts
    out ignoring them, as the parent did); the rest of the embedding carries over;
  - a parent without actions gets a new action embedding whose output layer starts at zero, so
    the child starts out as the parent;
  - no --action-topic: the parent's spec is kept and the footage counts as without commands
    (the actions unknown, as the parent saw real video).
What another context attention changes (`--context-attention`, DiTConfig.context_attention):
  every weight carries over; a "window" parent turned "frame" gets slot embeddings starting at
  zero (its context frames then attend within themselves only, and training adapts the rest).

Fine-tuning defaults (`FINE_TUNE_DEFAULTS`): the VAE frozen, peak learning rates a third of
training from scratch, a short warm-up, then a constant rate, so a checkpoint taken after m
minutes is what a run of m minutes would have given (`--snapshot-minutes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sora_ros.core.twist import TWIST_FIELDS
from sora_ros.model.config import ActionSpec, ModelConfig

# Parts `--train-parts` may name; the others stay frozen, bit for bit.
TRAINABLE_PARTS = ("vae", "dit")
# Defaults of `sora-ros train --init` (training from scratch keeps the parser's defaults).
FINE_TUNE_DEFAULTS = {"train_parts": ("dit",), "vae_lr": 3e-4, "dit_lr": 1e-4, "schedule": "constant", "warmup_steps": 20}


@dataclass
class Start:
    """A fine-tune's starting point.

    Attributes:
        config: the child's config (the parent's, with the child's name and action spec).
        vae, dit: modules holding the parent's weights (the DiT adapted to the child's actions).
        parent: model.json's "parent" section (weights.parent_record).
        anchor: {"config": dict, "latent_channels": C, "state": {name: tensor}} of the parent's
            anchored decoder, or None; the trainer adds a "note" for model.json before saving it.
        notes: one line per thing that carried over differently (action layout), for the log.
        unconverted: the parent's DiT before a change of context attention (for the parent's own
            validation numbers), else None.
    """

    config: ModelConfig
    vae: object
    dit: object
    parent: dict
    anchor: dict | None
    notes: list[str]
    unconverted: object = None


def choose_actions(base: ActionSpec, names=None, scale=None, offset=None) -> ActionSpec:
    """`base` with other action names and/or normalisation (--action-names/-scale/-offset).

    Args:
        base: the spec to start from (the preset's, or the parent's).
        names: Twist fields (sora_ros/core/twist.py), or None to keep base's.
        scale, offset: one value per name, or None: base's value for a name it has, else 1 and 0.

    Raises:
        ValueError: a name that is not a Twist field, a repeated name, or a list of the wrong length.
    """
    names = tuple(names) if names else base.names
    unknown = [n for n in names if n not in TWIST_FIELDS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"--action-names {list(names)}: each must be one of {list(TWIST_FIELDS)}, once")
    for flag, values in (("--action-scale", scale), ("--action-offset", offset)):
        if values is not None and len(values) != len(names):
            raise ValueError(f"{flag} has {len(values)} values for {len(names)} actions {list(names)}")

    def pick(values, own: tuple, default: float) -> tuple[float, ...]:
        if values is not None:
            return tuple(float(v) for v in values)
        return tuple(own[base.names.index(n)] if n in base.names else default for n in names)

    units = tuple("m/s" if n.startswith("linear") else "rad/s" for n in names)
    return ActionSpec(names=names, units=units, offset=pick(offset, base.offset, 0.0), scale=pick(scale, base.scale, 1.0))


def start_from(model_dir, name: str, action_change: tuple | None, expect: ModelConfig | None = None,
               context_attention: str | None = None) -> Start:
    """Load a model directory's weights as the starting point of a fine-tune.

    Args:
        model_dir: an exported model directory with weights.safetensors.
        name: the child's name (model.json).
        action_change: (names, scale, offset) for `choose_actions` on the parent's spec, or
            None to keep the parent's spec (footage without commands).
        expect: the architecture asked for (--preset), or None to take the parent's.
        context_attention: the child's DiTConfig.context_attention, or None to keep the parent's.

    Raises:
        WeightsError, ModelDirError: as `weights.load_weights`.
    """
    from sora_ros.model.dit import DiT
    from sora_ros.model.weights import load_weights, parent_record, with_run_sampler

    weights = load_weights(model_dir, expect=expect)
    parent_config = weights.config
    actions = parent_config.actions if action_change is None else choose_actions(parent_config.actions, *action_change)
    attention = context_attention or parent_config.dit.context_attention
    config = with_run_sampler(parent_config, weights.info).replace(name=name, actions=actions, dit=dataclasses.replace(
        parent_config.dit, action_dim=actions.dim, context_attention=attention))
    dit, notes, unconverted = weights.dit, [], None
    if actions.names != parent_config.actions.names:
        parent_attention = dataclasses.replace(config.dit, context_attention=parent_config.dit.context_attention)
        dit = DiT(config.replace(dit=parent_attention))  # actions first; the attention below
        notes = adapt_actions(weights.dit, dit)
    elif actions != parent_config.actions:
        notes = [f"action normalisation: offset {list(parent_config.actions.offset)} -> {list(actions.offset)}, "
                 f"scale {list(parent_config.actions.scale)} -> {list(actions.scale)}; the action embedding carries over"]  # fmt: skip
    if attention != parent_config.dit.context_attention:
        notes.append(f"context attention: {parent_config.dit.context_attention} -> {attention}"
                     + ("; slot embeddings start at zero" if attention == "frame" else "; slot embeddings dropped"))
        unconverted, dit = dit, adapt_context_attention(dit, config)
    dit.config = config
    anchor = None
    if weights.anchor is not None:
        anchor = {"config": weights.anchor.config.to_dict(), "latent_channels": config.vae.latent_channels,
                  "state": {k: v.clone() for k, v in weights.anchor.state_dict().items()}}  # fmt: skip
    return Start(config, weights.vae, dit, parent_record(weights), anchor, notes, unconverted)


def adapt_actions(parent, child) -> list[str]:
    """Copy a parent DiT's weights into a child DiT with another action layout (see the module docstring).

    Args:
        parent, child: sora_ros.model.dit.DiT of the same size; action names come from their configs.

    Returns:
        One line per action name saying whether it carried over or starts at zero.
    """
    import torch

    old, new = parent.config.actions.names, child.config.actions.names
    state = {k: v for k, v in parent.state_dict().items() if not k.startswith(("action_embed.", "unknown_action"))}
    child_state = child.state_dict()
    with torch.no_grad():
        if child.action_embed is not None:
            first = torch.zeros_like(child_state["action_embed.0.weight"])  # (D, A_child)
            if parent.action_embed is not None:
                for j, action in enumerate(new):
                    if action in old:
                        first[:, j] = parent.state_dict()["action_embed.0.weight"][:, old.index(action)]
                state.update({k: v for k, v in parent.state_dict().items()
                              if k.startswith("action_embed.") and k != "action_embed.0.weight"})  # fmt: skip
                state["unknown_action"] = parent.state_dict()["unknown_action"]
            else:  # a new embedding that adds exactly zero at first
                state.update({k: v for k, v in child_state.items() if k.startswith("action_embed.")})
                state["action_embed.2.weight"] = torch.zeros_like(child_state["action_embed.2.weight"])
                state["action_embed.2.bias"] = torch.zeros_like(child_state["action_embed.2.bias"])
                state["unknown_action"] = torch.zeros_like(child_state["unknown_action"])
            state["action_embed.0.weight"] = first
        child.load_state_dict(state, strict=True)
    if child.action_embed is None:
        return [f"actions {list(old)} dropped: the child is unconditioned, the parent's action embedding is not used"]
    if parent.action_embed is None:
        return [f"actions {list(new)}: a new action embedding, starting at zero (the parent had no actions)"]
    return [f"action {a}: " + ("carries over" if a in old else "new, starts at zero") for a in new] + \
        [f"action {a}: dropped (not in {list(new)})" for a in old if a not in new]


def adapt_context_attention(parent, config: ModelConfig):
    """A DiT of `config` holding `parent`'s weights; only the slot embeddings (DiT.slot_kv) of a
    "frame" DiT have no counterpart, and start at zero."""
    from sora_ros.model.dit import DiT

    child = DiT(config)
    state = {k: v for k, v in parent.state_dict().items() if k != "slot_kv"}
    if child.slot_kv is not None:
        state["slot_kv"] = child.slot_kv.detach().clone()
    child.load_state_dict(state, strict=True)
    return child


def carried_anchor(extra: dict):
    """The parent's anchored decoder (an AnchorNet) stored in a fine-tune checkpoint's `extra`, or None."""
    payload = extra.get("anchor")
    if not payload:
        return None
    from sora_ros.model.anchor import AnchorConfig, AnchorNet

    net = AnchorNet(AnchorConfig.from_dict(payload["config"]), payload["latent_channels"])
    net.load_state_dict(payload["state"])
    return net.eval()
