"""Export a registered run as a verified bundle; sits above inference because it verifies with its runner."""
