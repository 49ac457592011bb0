"""actions[t] is the command in force at frame t, driving frame t to t + 1: training pairs each
predicted frame with the action of the frame before it."""

import dataclasses

import pytest

torch = pytest.importorskip("torch")
from sora_ros.model.config import ActionSpec, preset  # noqa: E402
from sora_ros.model.training import dynamics_loss  # noqa: E402


class SpyDiT(torch.nn.Module):
    """Records what dynamics_loss feeds the network; predicts zero velocity."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, context, level, noisy, flow_time, action):
        self.calls.append((context.detach().clone(), action.detach().clone()))
        return torch.zeros_like(noisy) + self.weight


def test_each_target_frame_is_paired_with_the_action_of_the_frame_before():
    config = preset("tiny")
    config = config.replace(dit=dataclasses.replace(config.dit, max_context_noise=0.0, action_dropout=0.0),
                            actions=ActionSpec(offset=(0.0, 0.0), scale=(1.0, 1.0)), context_noise=0.0)  # fmt: skip
    spy = SpyDiT(config)
    k, frames = config.dit.context_frames, 6
    latents = torch.arange(frames, dtype=torch.float32)[None, :, None, None, None].expand(1, frames, *config.vae.latent_shape)
    actions = torch.arange(frames, dtype=torch.float32)[None, :, None].expand(1, frames, 2)  # actions[t] = t
    dynamics_loss(spy, latents.contiguous(), actions.contiguous())
    context, action = spy.calls[0]  # (W, K, C, h, w), (W, A)
    last_context_frame = context[:, -1].mean(dim=(1, 2, 3))  # frame index of the newest context frame
    assert action[:, 0].tolist() == last_context_frame.tolist() == [k - 1 + w for w in range(frames - k)]
