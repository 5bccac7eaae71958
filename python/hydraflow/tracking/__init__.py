"""Tracking: `@hydraflow.main` and the bookkeeping that makes every Hydra job
one MLflow run. Importing this package imports neither MLflow nor Hydra."""
