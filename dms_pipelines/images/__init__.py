"""Vehicle photographs: the imaging services' feeds, which source wins per vehicle, and each marketplace's image rules."""
