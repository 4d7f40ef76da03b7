"""edgesec: a security toolset for IoT edge routers."""

__version__ = "0.2.0"
