"""quantnb.models."""
