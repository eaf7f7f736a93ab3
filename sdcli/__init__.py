"""sdcli: a scriptable terminal client for the Stable Diffusion web UI API."""

__version__ = "0.1.0"
