"""Consultations for Nestpoint: consultants, availability, bookings, no-shows, advisers."""
