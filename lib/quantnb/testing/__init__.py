"""quantnb.testing."""
