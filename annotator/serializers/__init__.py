"""Input and output shapes of the JSON API, one module per area like api/: core (datasets, images, jobs),
units (survey, consensus, exports), fractures (descriptor labels). Imported by module."""
