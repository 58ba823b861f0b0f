"""ppad — few-shot anomaly detection in chest X-rays with position-guided CLIP prompts."""

__version__ = "0.1.0"
