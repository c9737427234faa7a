"""Marshmallow schemas: one per (dialect, event type), plus shared fields."""
