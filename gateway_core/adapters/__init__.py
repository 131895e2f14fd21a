"""Platform adapters: how messages get in and replies get out."""
