"""Input drift and confidence monitoring: a baseline shipped with every export, and scoring new data against it."""
