"""Lessons through the d2l AlexNet chapter: steps, their questions, and answers the package computes."""
