"""quantnb.data."""
