"""quantnb.stages."""
