"""Data selection before training: DEFT distribution-reward filtering, REAL pair selection."""
