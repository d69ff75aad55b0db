"""The Gradio chat in the browser (`paperchat chat`).

Gradio reads GRADIO_ANALYTICS_ENABLED when it is imported, so the package switches
analytics off here, before any module of it imports gradio.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
