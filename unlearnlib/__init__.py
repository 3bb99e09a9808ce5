"""unlearnlib: machine unlearning for image classifiers (SCRUB and feature-distillation SCRUB)."""
__version__ = "0.1.0"
