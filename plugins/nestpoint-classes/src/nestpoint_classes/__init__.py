"""Parent-child classes for Nestpoint: sessions, bookings, a waitlist, check-in."""
