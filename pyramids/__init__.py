"""Multi-scale image analysis on sparse operators."""
