"""The deployment kit; run from the repository root: python -m export.android_benchmark."""
