"""Getting rendered feeds to where marketplaces read them."""
