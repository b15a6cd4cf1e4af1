"""The core: local subscriptions, publish and deliver, and per-subscriber presence order."""
