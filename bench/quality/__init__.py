"""Qualification quality: does decay qualify better? See bench/quality/README.md."""
