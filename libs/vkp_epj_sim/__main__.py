"""`python -m vkp_epj_sim`: the same as `vkp epj-sim`."""

from vkp_cli.epj_sim import app

app()
