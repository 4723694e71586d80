"""commitlog."""
