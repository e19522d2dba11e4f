"""The labelling loop: choose pairs of an unlabelled pool, export/import labels, judge them."""
