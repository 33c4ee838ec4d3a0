"""The pages: widgets in, calls into the package, figures out."""
