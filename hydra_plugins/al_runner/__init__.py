"""Registers the runner's config nodes in Hydra's ConfigStore: Hydra imports this module when it starts (see
``runner.hydra_configs``)."""

from runner.hydra_configs import register

register()
