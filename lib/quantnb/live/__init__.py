"""quantnb.live."""
