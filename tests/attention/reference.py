"""The authors' RGA layer (Zhang et al., CVPR 2020), transcribed as the independent reference.

A plain transcription of the original ``RGA_Module`` (same constructor, same submodule names and
layout, same forward, relation matrices materialised), kept out of the ``attention`` package so
the tests and ``benchmarks/bench_attention.py`` compare the package against code that shares
nothing with it.
"""

from __future__ import annotations

import torch
from torch import nn


def _embedding(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _score(in_channels: int, down_ratio: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels // down_ratio, kernel_size=1, bias=False),
        nn.BatchNorm2d(in_channels // down_ratio),
        nn.ReLU(),
        nn.Conv2d(in_channels // down_ratio, 1, kernel_size=1, bias=False),
        nn.BatchNorm2d(1),
    )


class RGAModule(nn.Module):
    """``RGA_Module(in_channel, in_spatial, ...)`` of the authors; ``in_spatial = H * W``."""

    def __init__(
        self,
        in_channel: int,
        in_spatial: int,
        use_spatial: bool = True,
        use_channel: bool = True,
        cha_ratio: int = 8,
        spa_ratio: int = 8,
        down_ratio: int = 8,
    ) -> None:
        super().__init__()
        self.use_spatial = use_spatial
        self.use_channel = use_channel
        inter_channel = in_channel // cha_ratio
        inter_spatial = in_spatial // spa_ratio
        if use_spatial:
            self.gx_spatial = _embedding(in_channel, inter_channel)
            self.gg_spatial = _embedding(in_spatial * 2, inter_spatial)
            self.W_spatial = _score(1 + inter_spatial, down_ratio)
            self.theta_spatial = _embedding(in_channel, inter_channel)
            self.phi_spatial = _embedding(in_channel, inter_channel)
        if use_channel:
            self.gx_channel = _embedding(in_spatial, inter_spatial)
            self.gg_channel = _embedding(in_channel * 2, inter_channel)
            self.W_channel = _score(1 + inter_channel, down_ratio)
            self.theta_channel = _embedding(in_spatial, inter_spatial)
            self.phi_channel = _embedding(in_spatial, inter_spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        if self.use_spatial:
            theta_xs = self.theta_spatial(x)
            phi_xs = self.phi_spatial(x)
            theta_xs = theta_xs.view(b, self.theta_spatial[0].out_channels, -1)
            theta_xs = theta_xs.permute(0, 2, 1)
            phi_xs = phi_xs.view(b, self.phi_spatial[0].out_channels, -1)
            Gs = torch.matmul(theta_xs, phi_xs)
            Gs_in = Gs.permute(0, 2, 1).view(b, h * w, h, w)
            Gs_out = Gs.view(b, h * w, h, w)
            Gs_joint = torch.cat((Gs_in, Gs_out), 1)
            Gs_joint = self.gg_spatial(Gs_joint)
            g_xs = self.gx_spatial(x)
            g_xs = torch.mean(g_xs, dim=1, keepdim=True)
            ys = torch.cat((g_xs, Gs_joint), 1)
            W_ys = self.W_spatial(ys)
            if not self.use_channel:
                return torch.sigmoid(W_ys.expand_as(x)) * x
            x = torch.sigmoid(W_ys.expand_as(x)) * x
        # channel attention, on the spatially attended x when both are used
        xc = x.view(b, c, -1).permute(0, 2, 1).unsqueeze(-1)
        theta_xc = self.theta_channel(xc).squeeze(-1).permute(0, 2, 1)
        phi_xc = self.phi_channel(xc).squeeze(-1)
        Gc = torch.matmul(theta_xc, phi_xc)
        Gc_in = Gc.permute(0, 2, 1).unsqueeze(-1)
        Gc_out = Gc.unsqueeze(-1)
        Gc_joint = torch.cat((Gc_in, Gc_out), 1)
        Gc_joint = self.gg_channel(Gc_joint)
        g_xc = self.gx_channel(xc)
        g_xc = torch.mean(g_xc, dim=1, keepdim=True)
        yc = torch.cat((g_xc, Gc_joint), 1)
        W_yc = self.W_channel(yc).transpose(1, 2)
        return torch.sigmoid(W_yc) * x
