"""The demo domain (card payments) and the end-to-end demo run."""
