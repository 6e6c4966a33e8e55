"""Will it run, will it fit: the one support table and its check, memory arithmetic,
documented estimates, a cell's predicted footprint and the verdict on both. Pure functions of
the typed config; nothing loads."""
