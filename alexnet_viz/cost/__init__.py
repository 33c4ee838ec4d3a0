"""What work costs before it starts: memory budget, device profile, estimates."""
