"""``psohead app``: a local web page (Gradio) where a person drops a photo, watches the
reconstruction, turns the 3D head and downloads it. Needs the ``app`` extra."""
from .config import AppConfig

__all__ = ["AppConfig", "serve"]


def serve(config: AppConfig, block: bool = True):
    """Load the network, start the page on ``config.host:config.port``; returns the running server
    (a :class:`psohead.app.page.Server`) when ``block`` is False."""
    from .page import start

    return start(config, block=block)
