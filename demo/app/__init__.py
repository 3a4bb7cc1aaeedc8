"""Parts of ``demo/gradio_app.py``: input limits, prompts, models, request functions, the page."""
