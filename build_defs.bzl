"""Shared compiler options for the project's own code (not for third_party)."""

SSL_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-sign-compare",
    # Designated initializers that leave members at their defaults are the intent.
    "-Wno-missing-field-initializers",
]
