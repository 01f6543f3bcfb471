"""Level-triggered reconcilers: each pulls its node's desired document and makes Linux match it."""
