"""The shared queue of training jobs and the worker process that runs them."""
