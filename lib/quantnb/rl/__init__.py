"""quantnb.rl."""
