"""The JSON API, one module per area: core (datasets, images, jobs), units (survey, consensus, exports),
fractures (descriptor labels). One class per operation."""
